"""Ragged scoring: a scorer run on the first T slots equals the padded run on every real slot.

Tolerance 1e-5 (as `tests/export/test_onnx.py`): the cut-off slots j >= T > N are never
attention keys (their key mask is False and a masked logit's exp underflows to exactly 0 in
float32), so what changes is only the length of the sums the kernels run, a reordering worth a
few float32 ulps. A leak of a cut-off slot, a wrong per-slot offset or a slot shifted by one
moves logits by far more than 1e-2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.contract import CUT_SLOT_LOGIT
from export.fused import DEFERRED_LOGIT_LIMIT, attention_logit_bound, fused_copy
from model.network import IMPOSSIBLE_LOGIT, SegmentInterestModel
from segint.heads import exit_distribution, outcome_mask
from service.ranker import buckets
from tests.export.test_onnx import as_numpy, user_inputs
from tests.export.tiny import TINY, tiny_model

ATOL = RTOL = 1e-5
S = TINY["s_max"]


def candidates(n_segments: list[int] | np.ndarray, seed: int = 0) -> dict[str, torch.Tensor]:
    n = torch.as_tensor(np.asarray(n_segments), dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 29, (len(n),), generator=g)
    ids[-1] = 0  # an unknown video
    return {"video_ids": ids, "n_segments": n}


def user_state(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        states, mask = tiny_model("self").encode_user(**user_inputs(1, 4, seed=seed))
    return states, mask


def real(logits: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """Per candidate, the N + 1 outcome slots (N when N = S)."""
    return [logits[i, : min(int(k) + 1, S)] for i, k in enumerate(n)]


def assert_same_real_slots(got: np.ndarray, want: np.ndarray, n: np.ndarray) -> None:
    for g, w in zip(real(got, n), real(want, n), strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL)


MIXES = {
    "odd_mix": [1, 6, 3, 7, 2, 5, 2, 4, 1],
    "all_one": [1, 1, 1],
    "all_full": [S, S],  # N = S: no completion slot, all S slots needed
    "single": [3],
    "single_one": [1],
}


@pytest.mark.parametrize("mix", MIXES)
def test_ragged_score_matches_padded_in_pytorch(mix: str) -> None:
    """model.score on T = max(N) + 1 slots == model.score on all S, on every real slot."""
    model = tiny_model("self")
    states, mask = user_state()
    cand = candidates(MIXES[mix])
    n = cand["n_segments"].numpy()
    width = min(int(n.max()) + 1, S)
    with torch.no_grad():
        padded = model.score(states, mask, **cand).numpy()
        ragged = model.score(states, mask, **cand, slot_index=torch.arange(width)).numpy()
    assert ragged.shape == (len(n), width)
    assert_same_real_slots(ragged, padded, n)


def test_every_bucket_plan_matches_padded_in_pytorch_for_1000_candidates() -> None:
    """1,000 candidates of random N, scored bucket by bucket (`service.ranker.buckets`) and
    put back in order: the logits equal one padded run's on every real slot."""
    model = tiny_model("self")
    states, mask = user_state(seed=5)
    rng = np.random.default_rng(0)
    n = rng.integers(1, S + 1, 1000)
    cand = candidates(n, seed=1)
    with torch.no_grad():
        padded = model.score(states, mask, **cand).numpy()
    for overhead in (0, 10, 10_000):  # many runs .. one run
        got = np.full((len(n), S), CUT_SLOT_LOGIT, dtype=np.float32)
        for rows, width in buckets(n, S, overhead):
            idx = torch.from_numpy(rows)
            with torch.no_grad():
                part = model.score(
                    states,
                    mask,
                    cand["video_ids"][idx],
                    cand["n_segments"][idx],
                    slot_index=torch.arange(width),
                )
            got[rows, :width] = part.numpy()
        assert_same_real_slots(got, padded, n)
        # The cut-off slots carry the padded model's constant for impossible outcomes.
        np.testing.assert_array_equal(got[padded == IMPOSSIBLE_LOGIT], CUT_SLOT_LOGIT)
        om = outcome_mask(n, S)
        np.testing.assert_allclose(
            exit_distribution(got, om), exit_distribution(padded, om), atol=1e-6
        )


@pytest.mark.parametrize("mix", [*MIXES, "thousand"])
def test_ragged_scorer_graph_matches_padded_and_pytorch(self_artifact: Path, mix: str) -> None:
    """scorer.onnx on T slots == scorer.onnx on S slots == PyTorch, on every real slot."""
    model = tiny_model("self")
    states, mask = user_state(seed=2)
    n_list = np.random.default_rng(3).integers(1, S + 1, 1000) if mix == "thousand" else MIXES[mix]
    cand = candidates(n_list, seed=4)
    n = cand["n_segments"].numpy()
    sess = ort.InferenceSession(
        str(self_artifact / "scorer.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = as_numpy({"user_states": states, "user_mask": mask, **cand})
    (padded,) = sess.run(None, feeds | {"slot_index": np.arange(S)})
    width = min(int(n.max()) + 1, S)
    (ragged,) = sess.run(None, feeds | {"slot_index": np.arange(width)})
    with torch.no_grad():
        want = model.score(states, mask, **cand).numpy()
    assert padded.shape == (len(n), S) and ragged.shape == (len(n), width)
    np.testing.assert_allclose(padded, want, atol=ATOL, rtol=RTOL)
    assert_same_real_slots(ragged, want, n)
    for rows, w in buckets(n, S, 2):  # small runs, each at its own width
        (part,) = sess.run(
            None,
            feeds
            | {"video_ids": feeds["video_ids"][rows], "n_segments": n[rows]}
            | {"slot_index": np.arange(w)},
        )
        assert_same_real_slots(part, want[rows], n[rows])


def test_buckets_cover_every_row_once_at_a_sufficient_width() -> None:
    """Each candidate is in exactly one run, on at least its N + 1 outcome slots (N = S: S)."""
    rng = np.random.default_rng(0)
    for c in (1, 2, 17, 1000):
        n = rng.integers(1, 41, c)
        for overhead in (0, 50, 1_000_000):
            plan = buckets(n, 40, overhead)
            rows = np.concatenate([r for r, _ in plan])
            assert sorted(rows.tolist()) == list(range(c))
            for r, w in plan:
                assert w <= 40 and (np.minimum(n[r] + 1, 40) <= w).all()
                assert w == np.minimum(n[r] + 1, 40).max()  # tight: the largest need
            if overhead == 1_000_000:
                assert len(plan) == 1  # a run costs more than any padding
            if overhead == 0:
                assert len(plan) == len(np.unique(np.minimum(n + 1, 40)))  # no padding at all


def _cheapest_cut_cost(need: np.ndarray, overhead: int) -> int:
    """The least cost over every cut of the sorted distinct needs (all 2^(k-1) enumerated)."""
    widths = np.unique(need)
    k = len(widths)
    best = None
    for mask in range(1 << (k - 1)):  # bit i: cut after distinct need i
        total, start = 0, 0
        for i in range(k):
            if i == k - 1 or mask >> i & 1:
                group = (need >= widths[start]) & (need <= widths[i])
                total += overhead + int(group.sum()) * int(widths[i])
                start = i + 1
        best = total if best is None else min(best, total)
    assert best is not None
    return best


def test_buckets_are_the_cheapest_contiguous_plan() -> None:
    """The dynamic programme's plan (a lower envelope of lines, `bucket_plan`) costs no more
    than any cut of the sorted needs: one hand-made request, then 300 random ones of up to 10
    distinct needs (each with every cut enumerated), run costs from 0 to more than any plan."""

    def cost(plan: list[tuple[np.ndarray, int]], overhead: int) -> int:
        return sum(overhead + len(r) * w for r, w in plan)

    n = np.array([1, 1, 2, 5, 5, 5, 9, 12, 12, 20, 3, 2])
    assert cost(buckets(n, 40, 7), 7) == _cheapest_cut_cost(np.minimum(n + 1, 40), 7)
    rng = np.random.default_rng(0)
    for _ in range(300):
        widths = rng.choice(np.arange(1, 41), int(rng.integers(1, 11)), replace=False)
        n = rng.choice(widths, int(rng.integers(1, 300))) - 1  # needs N + 1 = those widths
        n = np.clip(n, 1, 40)
        overhead = int(rng.choice([0, 1, 5, 64, 300, 100_000]))
        want = _cheapest_cut_cost(np.minimum(n + 1, 40), overhead)
        assert cost(buckets(n, 40, overhead), overhead) == want


@pytest.mark.parametrize("softmax", ["deferred", "explicit"])
@pytest.mark.parametrize("values, unbind", [("joined", "split"), ("split", "slice")])
@pytest.mark.parametrize("tilt", ["elementwise", "matmul"])
@pytest.mark.parametrize("layout", ["heads_first", "heads_first_3d", "stacked", "token_major"])
def test_fused_attention_copy_matches_the_model(
    layout: str, tilt: str, values: str, unbind: str, softmax: str
) -> None:
    """export.fused's inference forms (heads_first + elementwise tilt + Split + deferred
    softmax: what scorer.onnx is exported from; the others: the bench's side-by-side) give
    model.score's logits, padded and ragged, within the parity tolerance."""
    model = tiny_model("self")
    fused = fused_copy(model, layout, tilt, values, unbind, softmax)
    states, mask = user_state(seed=7)
    cand = candidates([1, 4, 3, 2, 5, 2, 4, 1], seed=8)  # N + 1 <= S - 1 slots
    with torch.no_grad():
        want = model.score(states, mask, **cand).numpy()
        got = fused.score(states, mask, **cand).numpy()
        ragged = fused.score(states, mask, **cand, slot_index=torch.arange(S - 1)).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    assert_same_real_slots(ragged, want, cand["n_segments"].numpy())
    kind = {
        "heads_first": "FusedVideoEncoder",
        "heads_first_3d": "FusedVideoEncoder",
        "stacked": "FusedCrossAttention",
        "token_major": "TokenMajorVideoEncoder",
    }[layout]
    encoder = fused.encoders["id"]
    parts = [encoder, *(getattr(b, "attn", b) for b in encoder.video)]
    assert any(type(p).__name__ == kind for p in parts)
    decoder = type(fused.decoder).__name__
    assert decoder == {"elementwise": "ElementwiseTiltDecoder", "matmul": "InterestDecoder"}[tilt]
    assert torch.equal(fused.decoder.tilt, model.decoder.tilt)  # the carrier token is stripped
    if layout.startswith("heads_first"):
        assert all(b.joined_values == (values == "joined") for b in encoder.video)
        assert all(b.split == (unbind == "split") for b in encoder.video)
        deferred = softmax == "deferred" and layout == "heads_first"  # 2-D rows only
        assert all(b.deferred == deferred for b in encoder.video)


def _attention_logits(model: SegmentInterestModel, seed: int) -> float:
    """The largest |logit| of the video blocks' attentions on random LayerNorm inputs (each
    source's query and key maps applied as `model.network.CrossAttention` applies them)."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for name, enc in model.encoders.items():
            emb = model.embeddings[name]
            x_v = emb.video_norm(torch.randn(200, TINY["d_model"], generator=g) * 3)
            users = [emb.user_norm(torch.randn(200, TINY["d_model"], generator=g) * 3)]
            users += [b.norm2(torch.randn(200, TINY["d_model"], generator=g)) for b in enc.user]
            for i, block in enumerate(enc.video):
                attn = block.attn
                for src, keys in ((0, x_v), (1, users[i])):
                    q = attn.heads(attn.q[src](x_v)[None]) * attn.scale
                    k = attn.heads(attn.k[src](keys)[None])
                    worst = max(worst, float((q @ k.transpose(-2, -1)).abs().max()))
                x_v = block.norm2(torch.randn(200, TINY["d_model"], generator=g))
    return worst


def test_attention_logit_bound_holds_and_a_large_one_keeps_the_explicit_softmax(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`attention_logit_bound` is above every logit random LayerNorm outputs give (with
    LayerNorm gains and biases that are not 1 and 0), and a model whose bound passes
    DEFERRED_LOGIT_LIMIT is exported with the explicit softmax, same logits, and says so."""
    model = tiny_model("self")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    bound = attention_logit_bound(model)
    seen = max(_attention_logits(model, seed) for seed in range(5))
    assert 0 < seen <= bound
    with torch.no_grad():  # weights x 4: logits x 16, past the limit
        for enc in model.encoders.values():
            for block in enc.video:
                for lin in [*block.attn.q, *block.attn.k]:
                    lin.weight.mul_(4.0)
    assert attention_logit_bound(model) > DEFERRED_LOGIT_LIMIT
    with caplog.at_level("WARNING", logger="export.fused"):
        fused = fused_copy(model, "heads_first", "elementwise")
    assert "explicit softmax" in caplog.text
    assert not any(b.deferred for b in fused.encoders["id"].video)
    states, mask = user_state(seed=5)
    cand = candidates([1, 4, 3, 2, 5, 2], seed=6)
    with torch.no_grad():
        want = model.score(states, mask, **cand).numpy()
        got = fused.score(states, mask, **cand, slot_index=torch.arange(S - 1)).numpy()
    assert_same_real_slots(got, want, cand["n_segments"].numpy())


def test_elementwise_tilt_matches_on_every_slot_count() -> None:
    """The tilt written out term by term equals slot_features @ w for N = 1..S on every slot
    (impossible slots keep IMPOSSIBLE_LOGIT), with a large residual so a wrong term shows."""
    model = tiny_model("self")
    with torch.no_grad():
        model.decoder.tilt.copy_(torch.tensor([-1.3, 0.7, 0.4, -2.1]))
    fused = fused_copy(model, "heads_first", "elementwise")
    states, mask = user_state(seed=3)
    states = states.clone()
    states[:, 0, 0, -1, 0] = 2.5  # the residual R rides in the carrier token
    cand = candidates(list(range(1, S + 1)), seed=4)
    with torch.no_grad():
        want = model.score(states, mask, **cand).numpy()
        got = fused.score(states, mask, **cand).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    assert (
        got[np.arange(S)[None, :] > cand["n_segments"].numpy()[:, None]] == IMPOSSIBLE_LOGIT
    ).all()


def test_unknown_layout_tilt_or_values_is_refused() -> None:
    model = tiny_model("self")
    with pytest.raises(ValueError, match="layout"):
        fused_copy(model, "diagonal")
    with pytest.raises(ValueError, match="tilt"):
        fused_copy(model, "heads_first", "gemv")
    with pytest.raises(ValueError, match="values"):
        fused_copy(model, "heads_first", "elementwise", "stacked")
    with pytest.raises(ValueError, match="unbind"):
        fused_copy(model, "heads_first", "elementwise", "joined", "gather")
    with pytest.raises(ValueError, match="softmax"):
        fused_copy(model, "heads_first", "elementwise", "joined", "split", "online")
