"""SegmentInterestModel: shapes, masking, the self-stream cache split, quirk switches, learning."""

from __future__ import annotations

import math

import pytest
import torch

from model import SegmentInterestModel
from model.loss import exit_ce
from model.network import IMPOSSIBLE_LOGIT, history_stats, slot_features
from segint.baselines import exit_counts
from tests.model.model_testing import (
    N_VIDEOS,
    B,
    H,
    S,
    make_batch,
    tiny_config,
    user_part,
    video_part,
)

STREAMS = ("self", "cross")
MODALITIES = (("id",), ("content",), ("id", "content"))
VARIANTS = (
    {},
    {"n_layers": 0},
    {"n_layers": 3},
    {"history_tokens": False},
    {"reference_last_layer_bug": True},
    {"exit_prior": 1.0},
    {"exit_prior": 1.0, "exit_prior_base": "n_segments"},
    {"history_stats": True},
)


def build(seed: int = 0, **overrides) -> SegmentInterestModel:
    torch.manual_seed(seed)
    return SegmentInterestModel(tiny_config(**overrides))


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("modalities", MODALITIES)
def test_forward_shapes(stream, modalities):
    """forward returns finite float32 logits (B, S) for every stream and modality mix."""
    model = build(user_stream=stream, modalities=modalities)
    logits = model(**make_batch(model.cfg))
    assert logits.shape == (B, S) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("b", "h"), [(1, 1), (2, 3), (3, 9)])
def test_odd_sizes(stream, b, h):
    """Batch of 1, one history view, and more history than history_len (shared oldest recency)."""
    model = build(user_stream=stream, modalities=("id", "content")).eval()
    logits = model(**make_batch(model.cfg, b=b, h=h, seed=b))
    assert logits.shape == (b, S) and torch.isfinite(logits).all()


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(
    "overrides", [{}, {"history_tokens": False}, {"n_layers": 0}, {"n_layers": 1}]
)
def test_fully_masked_rows_stay_finite(stream, overrides):
    """No history at all and N = 1 everywhere: logits and every gradient stay finite."""
    model = build(user_stream=stream, modalities=("id", "content"), **overrides)
    batch = make_batch(model.cfg)
    batch["hist_mask"][:] = False
    batch["n_segments"][:] = 1
    logits = model(**batch)  # train mode: dropout active
    assert torch.isfinite(logits).all()
    exit_ce(logits, torch.zeros(B, dtype=torch.long), batch["n_segments"]).backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("stream", STREAMS)
def test_padded_history_does_not_change_logits(stream):
    """Whatever sits in padded history entries (even -1 ids or N = 0) has no effect."""
    model = build(user_stream=stream, modalities=("id", "content")).eval()
    batch = make_batch(model.cfg)
    pad = ~batch["hist_mask"]
    assert pad.any()
    garbage = dict(batch)
    garbage["hist_video_ids"] = torch.where(pad, 5, batch["hist_video_ids"])
    garbage["hist_exit_slots"] = torch.where(pad, -1, batch["hist_exit_slots"])
    garbage["hist_n_segments"] = torch.where(pad, 0, batch["hist_n_segments"])
    garbage["hist_content"] = torch.where(pad[..., None], 1e3, batch["hist_content"])
    with torch.no_grad():
        torch.testing.assert_close(model(**garbage), model(**batch), rtol=0, atol=0)
        # ...while a real history entry does matter.
        changed = dict(batch)
        changed["hist_video_ids"] = torch.where(batch["hist_mask"], 3, batch["hist_video_ids"])
        assert not torch.allclose(model(**changed), model(**batch))


@pytest.mark.parametrize("stream", STREAMS)
def test_padded_history_equals_shorter_history(stream):
    """Masked keys get no attention: H=5 with the last two entries padded == H=3, unpadded."""
    model = build(user_stream=stream, modalities=("id", "content")).eval()
    batch = make_batch(model.cfg)
    batch["hist_mask"][:, :3] = True
    batch["hist_mask"][:, 3:] = False
    short = {k: v[:, :3] if k.startswith("hist_") else v for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), model(**short), rtol=0, atol=1e-6)


def test_slot_features_by_hand():
    """[j/N, 1[j==N], 1[j<N], N/S] for N = 2, S = 4."""
    expected = [[0, 0, 1, 0.5], [0.5, 0, 1, 0.5], [1, 1, 0, 0.5], [1.5, 0, 0, 0.5]]
    assert slot_features(torch.tensor([2]), 4).tolist() == [expected]


def test_impossible_slots_get_constant_logit():
    """Slots j > N get IMPOSSIBLE_LOGIT; slot N (completion) stays learned; switch turns it off."""
    model = build().eval()
    batch = make_batch(model.cfg)
    with torch.no_grad():
        logits = model(**batch)
    j = torch.arange(S)[None, :]
    n = batch["n_segments"][:, None]
    assert (logits[j > n] == IMPOSSIBLE_LOGIT).all()
    assert (logits[j <= n].abs() < 100).all()
    plain = build(mask_impossible=False).eval()
    with torch.no_grad():
        assert (plain(**batch).abs() < 100).all()


def test_offsets_start_neutral():
    """Position bias and per-video exit profiles start at exactly zero (unlike the reference)."""
    model = build()
    assert torch.count_nonzero(model.decoder.position_bias) == 0
    assert torch.count_nonzero(model.decoder.profile.weight) == 0
    assert build(position_bias=False, video_profile=False).decoder.profile is None


@pytest.mark.parametrize("modalities", MODALITIES)
@pytest.mark.parametrize("overrides", VARIANTS)
def test_self_forward_equals_score_of_encode_user(modalities, overrides):
    """Self stream: forward == score(*encode_user(...)), the serving split of the same math."""
    model = build(modalities=modalities, **overrides).eval()
    batch = make_batch(model.cfg)
    with torch.no_grad():
        states, user_mask = model.encode_user(**user_part(batch))
        m = 1 + H if model.cfg.history_tokens else 1
        assert states.shape == (B, len(modalities), model.cfg.n_layers, m, model.cfg.d_model)
        assert user_mask.shape == (B, m) and user_mask.dtype == torch.bool
        split = model.score(states, user_mask, **video_part(batch))
        torch.testing.assert_close(split, model(**batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("modalities", MODALITIES)
def test_score_broadcasts_one_user_over_candidates(modalities):
    """One cached user (batch 1) scored against C candidates == forward on C copies of the user."""
    model = build(modalities=modalities).eval()
    c = 9
    user = user_part(make_batch(model.cfg, b=1, seed=1))
    user["hist_mask"][0, :2] = True
    candidates = video_part(make_batch(model.cfg, b=c, seed=2))
    with torch.no_grad():
        states, user_mask = model.encode_user(**user)
        logits = model.score(states, user_mask, **candidates)
        repeated = {k: v.expand(c, *v.shape[1:]) for k, v in user.items()}
        torch.testing.assert_close(logits, model(**repeated, **candidates), rtol=0, atol=1e-5)
    assert logits.shape == (c, S)


@pytest.mark.parametrize(("stream", "depends"), [("cross", True), ("self", False)])
def test_user_tokens_see_the_candidate_only_in_cross_stream(stream, depends):
    """Cross: the user tokens after layer 1 depend on the candidate video; self: they do not."""
    model = build(user_stream=stream).eval()
    seen: list[torch.Tensor] = []
    model.encoders["id"].user[0].register_forward_hook(lambda _m, _i, out: seen.append(out))
    batch = make_batch(model.cfg)
    other = dict(batch, video_ids=(batch["video_ids"] + 1) % model.cfg.n_videos)
    with torch.no_grad():
        model(**batch)
        model(**other)
    assert (not torch.allclose(seen[0], seen[1])) == depends


def test_cross_stream_has_no_cache_api():
    """encode_user / score exist for the self stream only; missing content is a clear error."""
    model = build(user_stream="cross")
    batch = make_batch(model.cfg)
    with pytest.raises(ValueError, match="user_stream='self'"):
        model.encode_user(**user_part(batch))
    content = build(modalities=("content",))
    batch = make_batch(content.cfg)
    del batch["hist_content"]
    with pytest.raises(ValueError, match="hist_content"):
        content(**batch)


@pytest.mark.parametrize("stream", STREAMS)
def test_tiny_batch_overfits_with_exit_ce(stream):
    """A few hundred steps on 13 views drive exit_ce near 0 and rank every exit slot first."""
    model = build(user_stream=stream, dropout=0.0)
    batch = make_batch(model.cfg, seed=3)
    u = torch.rand(B, generator=torch.Generator().manual_seed(4))
    exit_slot = (u * (batch["n_segments"] + 1)).long().clamp(max=S - 1)  # 0..N, a slot exists
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = exit_ce(model(**batch), exit_slot, batch["n_segments"]).item()
    for _ in range(300):
        opt.zero_grad()
        loss = exit_ce(model(**batch), exit_slot, batch["n_segments"])
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    # Ranked first = lowest interest logit among the view's real outcomes 0..N.
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).argmin(dim=1), exit_slot)


def test_deterministic_with_a_seed():
    """Same seed: identical initial weights, identical dropout, identical updated weights."""

    def one_step(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        model = build(seed=seed, modalities=("id", "content"))
        batch = make_batch(model.cfg)
        torch.manual_seed(123)
        logits = model(**batch)
        exit_ce(logits, torch.zeros(B, dtype=torch.long), batch["n_segments"]).backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        return logits.detach(), torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b, c = one_step(0), one_step(0), one_step(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_reference_last_layer_bug_switch():
    """Quirk: output = input of the last layer, so the last layer's parameters get no gradient."""
    fixed, buggy = build(), build(reference_last_layer_bug=True)
    buggy.load_state_dict(fixed.state_dict())  # same parameter set, same weights
    batch = make_batch(fixed.cfg)
    for model in (fixed, buggy):
        model.eval()
        model(**batch).sum().backward()
    with torch.no_grad():
        assert not torch.allclose(fixed(**batch), buggy(**batch))
    last = fixed.cfg.n_layers - 1
    for name, p in buggy.named_parameters():
        if name.startswith(f"encoders.id.video.{last}."):
            assert p.grad is None, name
    # Fixed behaviour: every parameter is used (DistributedDataParallel needs no extra flag).
    assert all(p.grad is not None for p in fixed.parameters())


def test_attention_logit_dropout_switch():
    """Quirk: dropout on attention logits changes training-mode outputs only."""
    plain, quirk = build(), build(attn_logit_dropout=True)
    quirk.load_state_dict(plain.state_dict())
    batch = make_batch(plain.cfg)
    outs = []
    for model in (plain, quirk):
        torch.manual_seed(7)
        outs.append(model(**batch).detach())
    assert not torch.allclose(outs[0], outs[1])
    plain.eval()
    quirk.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch), quirk(**batch), rtol=0, atol=0)


def counts_of(videos: torch.Tensor, exits: torch.Tensor) -> torch.Tensor:
    """(N_VIDEOS, S) exit counts of (video, exit) pairs, as training builds them."""
    return torch.as_tensor(exit_counts(videos.numpy(), exits.numpy(), N_VIDEOS, S)).float()


def test_exit_prior_by_hand():
    """exit_prior: -log((c_vj + a g_j) / (n_v + a)) per video, counted from (video, exit) pairs;
    the unknown video is the global profile; a left-out view is subtracted from its video."""
    a = 2.0
    model = build(exit_prior=a).eval()
    dec = model.decoder
    videos = torch.tensor([1, 1, 1, 2, 3, 0])
    exits = torch.tensor([0, 0, 2, 1, S, 4])  # exit S has no slot; video 0 is never counted
    dec.set_exit_counts(counts_of(videos, exits))
    c = torch.zeros(N_VIDEOS, S)
    c[1, 0], c[1, 2], c[2, 1] = 2, 1, 1
    g = torch.zeros(S)
    g[0], g[1], g[2] = 2 / 4, 1 / 4, 1 / 4
    g = g.clamp(min=1e-6) / g.clamp(min=1e-6).sum()
    torch.testing.assert_close(dec.global_exit, g)

    def hand(counts: torch.Tensor) -> torch.Tensor:
        return ((counts + a * g) / (counts.sum() + a)).log()

    ids = torch.tensor([1, 2, 3, 0, 1, 2])
    got = dec.exit_prior(ids, None)
    for i, v in enumerate(ids.tolist()):
        torch.testing.assert_close(got[i], hand(c[v]))
    torch.testing.assert_close(got[2], g.log())  # video 3's only view exited at S: no counts
    torch.testing.assert_close(got[3], g.log())  # unknown video: the global profile
    # Leave-one-out: the row's own exit is removed from its video's counts (never below 0,
    # never for the unknown video, never for exit S).
    loo = dec.exit_prior(ids, torch.tensor([0, 1, S, 3, 2, 5]))
    one_less = c[1].clone()
    one_less[0] -= 1
    torch.testing.assert_close(loo[0], hand(one_less))
    torch.testing.assert_close(loo[1], g.log())  # video 2's only view left out
    torch.testing.assert_close(loo[2], got[2])
    torch.testing.assert_close(loo[3], got[3])
    one_less = c[1].clone()
    one_less[2] -= 1
    torch.testing.assert_close(loo[4], hand(one_less))
    torch.testing.assert_close(loo[5], hand(c[2]))  # slot 5 had no count: clamped at 0


def test_exit_prior_toward_the_same_n_profile_by_hand():
    """exit_prior_base n_segments: -log((c_vj + a p_Nj) / (n_v + a)) with p_N the exit profile
    of the training views of N-segment videos (plus one pseudo-view of g); the unknown video
    gets p_N of its own N; leave-one-out removes the row's exit from both count tables."""
    a = 2.0
    model = build(exit_prior=a, exit_prior_base="n_segments").eval()
    dec = model.decoder
    videos = torch.tensor([1, 1, 1, 2, 3, 4])
    n_seg = torch.tensor([3, 3, 3, 3, 2, 2])  # videos 1, 2 have N = 3; videos 3, 4 N = 2
    exits = torch.tensor([0, 0, 2, 1, 2, 1])
    n_table = torch.as_tensor(exit_counts(n_seg.numpy(), exits.numpy(), S + 1, S)).float()
    dec.set_exit_counts(counts_of(videos, exits), n_table)
    c = torch.zeros(N_VIDEOS, S)
    c[1, 0], c[1, 2], c[2, 1], c[3, 2], c[4, 1] = 2, 1, 1, 1, 1
    g = torch.zeros(S)
    g[0], g[1], g[2] = 2 / 6, 2 / 6, 2 / 6
    g = g.clamp(min=1e-6) / g.clamp(min=1e-6).sum()
    cn = torch.zeros(S + 1, S)
    cn[3, 0], cn[3, 1], cn[3, 2], cn[2, 1], cn[2, 2] = 2, 1, 1, 1, 1

    def profile(counts_n: torch.Tensor) -> torch.Tensor:
        return (counts_n + g) / (counts_n.sum() + 1.0)

    def hand(counts: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return ((counts + a * p) / (counts.sum() + a)).log()

    ids = torch.tensor([1, 2, 0, 0, 3, 0])
    n = torch.tensor([3, 3, 3, 2, 2, 5])
    got = dec.exit_prior(ids, None, n)
    torch.testing.assert_close(got[0], hand(c[1], profile(cn[3])))
    torch.testing.assert_close(got[1], hand(c[2], profile(cn[3])))
    torch.testing.assert_close(got[2], profile(cn[3]).log())  # unknown video: its N's profile
    torch.testing.assert_close(got[3], profile(cn[2]).log())
    torch.testing.assert_close(got[4], hand(c[3], profile(cn[2])))
    torch.testing.assert_close(got[5], g.log())  # no training view has N = 5: the global g
    # Leave-one-out: the row's exit leaves its video's counts and its N's counts.
    loo = dec.exit_prior(ids[:2], torch.tensor([0, 1]), n[:2])
    c1, cn3 = c[1].clone(), cn[3].clone()
    c1[0] -= 1
    cn3[0] -= 1
    torch.testing.assert_close(loo[0], hand(c1, profile(cn3)))
    cn3 = cn[3].clone()
    cn3[1] -= 1
    torch.testing.assert_close(loo[1], profile(cn3).log())  # video 2's only view left out
    with pytest.raises(ValueError, match="n_segments"):
        dec.exit_prior(ids, None)
    with pytest.raises(ValueError, match="n_table"):
        dec.set_exit_counts(counts_of(videos, exits))
    with pytest.raises(ValueError, match="n_table"):
        build(exit_prior=a).decoder.set_exit_counts(counts_of(videos, exits), n_table)
    with pytest.raises(ValueError, match="exit_prior_base"):
        tiny_config(exit_prior=a, exit_prior_base="video")


def test_exit_prior_by_n_keeps_the_user_encoder_and_scorer_split():
    """The N-aware prior lives in the decoder: score(encode_user(...)) == forward(...)."""
    model = build(exit_prior=1.0, exit_prior_base="n_segments", dropout=0.0).eval()
    batch = make_batch(model.cfg, seed=4)
    n_table = torch.rand(S + 1, S) * 5
    model.decoder.set_exit_counts(counts_of(batch["video_ids"], batch["n_segments"]), n_table)
    assert "decoder.n_exit_counts" in model.state_dict()
    with torch.no_grad():
        full = model(**batch)
        split = model.score(*model.encode_user(**user_part(batch)), **video_part(batch))
    torch.testing.assert_close(split, full)


def test_exit_prior_enters_the_logits_with_a_learned_weight():
    """The prior lowers the interest of slots where the video's viewers left; the weight is a
    parameter (leave-one-out: tests/training/test_wrapper.py)."""
    model = build(exit_prior=1.0, dropout=0.0).eval()
    batch = make_batch(model.cfg, seed=2)
    with torch.no_grad():
        before = model(**batch)
        model.decoder.set_exit_counts(
            counts_of(batch["video_ids"], torch.zeros(B, dtype=torch.long))
        )
        after = model(**batch)
    known = batch["video_ids"] > 0
    # Slot 0 of every counted video (N >= 1 always, so slot 0 is real) lost interest.
    assert (after[known][:, 0] < before[known][:, 0]).all()
    assert "decoder.prior_weight" in dict(model.named_parameters())
    assert "decoder.exit_counts" in model.state_dict()


def test_exit_prior_config_is_checked():
    with pytest.raises(ValueError, match="exit_prior"):
        tiny_config(exit_prior=-1.0)
    with pytest.raises(ValueError, match="exit_prior"):
        tiny_config(exit_prior=True)
    with pytest.raises(ValueError, match="exit_prior > 0"):
        build().decoder.set_exit_counts(torch.zeros(N_VIDEOS, S))


def test_history_stats_by_hand():
    """Completion rate, mean watched fraction, early-exit rate, log count, has-history over the
    real entries only (padding ignored whatever it holds); zeros for an empty history."""
    exits = torch.tensor([[3, 0, 2, 9], [0, 0, 0, 0]])
    n_seg = torch.tensor([[3, 4, 8, 9], [1, 1, 1, 1]])
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])
    got = history_stats(exits, n_seg, mask)
    want = torch.tensor(
        [
            [1 / 3, (1 + 0 + 2 / 8) / 3, 1 / 3, math.log(4) / math.log(21), 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(got, want)


def test_history_stats_reach_the_logits_and_keep_the_cache_split():
    """history_stats: the stats projection is a parameter fed from the history inputs only;
    changing how a history view ended changes that row's logits; score(encode_user) == forward."""
    model = build(history_stats=True, history_tokens=False, dropout=0.0).eval()
    assert model.embeddings["id"].stats is not None
    batch = make_batch(model.cfg, seed=5)
    with torch.no_grad():
        full = model(**batch)
        split = model.score(*model.encode_user(**user_part(batch)), **video_part(batch))
        torch.testing.assert_close(split, full)
        changed = dict(batch)
        changed["hist_exit_slots"] = batch["hist_n_segments"].clone()  # all completions
        other = model(**changed)
    has_hist = batch["hist_mask"].any(1)
    # Without history tokens only the stats see how views ended.
    assert not torch.allclose(other[has_hist], full[has_hist])
    torch.testing.assert_close(other[~has_hist], full[~has_hist])


def test_side_features_are_id_indexed_buffers():
    """Side codes are buffers looked up by the ids the model already takes: the unknown id
    keeps the reserved codes, changing a video's codes changes only its rows, bad codes are
    refused; forward == score(encode_user) with side features."""
    model = build(video_side_sizes=(3, 4), user_side_sizes=(2,), dropout=0.0).eval()
    state = model.state_dict()
    assert "embeddings.id.video_side.codes" in state and "embeddings.id.user_side.codes" in state
    batch = make_batch(model.cfg, seed=6)
    batch["hist_mask"][:] = False  # the target video only, not history views of it
    vcodes = torch.zeros(N_VIDEOS, 2, dtype=torch.long)
    vcodes[:, 0] = torch.arange(N_VIDEOS) % 3
    vcodes[:, 1] = torch.arange(N_VIDEOS) % 4
    model.set_side_features(vcodes, torch.ones(model.cfg.n_users, 1, dtype=torch.long))
    side = model.embeddings["id"].video_side
    assert side.codes[0].tolist() == [0, 0]  # the unknown video: reserved rows
    assert side.codes[5].tolist() == [2, 1]
    with torch.no_grad():
        full = model(**batch)
        split = model.score(*model.encode_user(**user_part(batch)), **video_part(batch))
        torch.testing.assert_close(split, full)
        v = int(batch["video_ids"][batch["video_ids"] > 0][0])
        changed = vcodes.clone()
        changed[v] = torch.tensor([(vcodes[v, 0] + 1) % 3, vcodes[v, 1]])
        model.set_side_features(changed)
        other = model(**batch)
    hit = batch["video_ids"] == v
    assert not torch.allclose(other[hit], full[hit])
    torch.testing.assert_close(other[~hit], full[~hit])
    with pytest.raises(ValueError, match="side codes"):
        model.set_side_features(torch.full((N_VIDEOS, 2), 3, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model.set_side_features(torch.zeros(N_VIDEOS, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="video_side_sizes is empty"):
        build().set_side_features(vcodes)
    with pytest.raises(ValueError, match="video_side_sizes"):
        tiny_config(video_side_sizes=(0,))
    with pytest.raises(ValueError, match="'id' modality"):
        tiny_config(modalities=("content",), user_side_sizes=(2,))


def tilt_model(**overrides) -> SegmentInterestModel:
    """A user_tilt model whose exit counts come from random (video, N, exit) views."""
    model = build(exit_prior=4.0, exit_prior_base="n_segments", user_tilt=2.0, **overrides)
    g = torch.Generator().manual_seed(7)
    videos = torch.randint(1, N_VIDEOS, (60,), generator=g)
    n_seg = (videos % S) + 1  # one N per video
    exits = (torch.rand(60, generator=g) * (n_seg + 1)).long()
    n_table = torch.as_tensor(exit_counts(n_seg.numpy(), exits.numpy(), S + 1, S)).float()
    model.decoder.set_exit_counts(counts_of(videos, exits), n_table)
    return model


def test_user_residual_by_hand():
    """R = sum over real history views of (min(exit, N) / N - sum_j p_j min(j, N) / N) /
    (views + k0), p the exit prior's profile with the view's own exit left out; in training a
    same-video view leaves the target's exit out too; an empty history gives 0."""
    model = tilt_model(user_tilt_shrink=3.0).eval()
    dec = model.decoder
    ids = torch.tensor([[1, 2, 0, 5], [0, 0, 0, 0]])
    n = torch.tensor([[2, 3, 4, 6], [1, 1, 1, 1]])
    exits = torch.tensor([[2, 0, 1, 3], [0, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])

    def expected(v: int, nn_: int, e: int, extra: int | None = None) -> float:
        c = dec.exit_counts[v].clone()
        cn = dec.n_exit_counts[nn_].clone()
        if e < S:
            c[e] -= 1 if v > 0 else 0
            cn[e] -= 1
        if extra is not None:
            c[extra] -= 1
        c, cn = c.clamp(min=0), cn.clamp(min=0)
        base = (cn + dec.global_exit) / (cn.sum() + 1.0)
        p = (c + 4.0 * base) / (c.sum() + 4.0)
        j = torch.arange(S, dtype=torch.float32)
        return float((p * torch.minimum(j, torch.tensor(float(nn_))) / nn_).sum())

    resid = [min(e, k) / k - expected(v, k, e) for v, k, e in [(1, 2, 2), (2, 3, 0), (0, 4, 1)]]
    got = dec.user_residual(ids, exits, n, mask)
    torch.testing.assert_close(got, torch.tensor([sum(resid) / (3 + 3.0), 0.0]))
    # Training: the target (video 2, exit 1) is a fitting row; the view of video 2 drops it.
    got = dec.user_residual(ids, exits, n, mask, torch.tensor([2, 2]), torch.tensor([1, 1]))
    resid[1] = 0 - expected(2, 3, 0, extra=1)
    torch.testing.assert_close(got, torch.tensor([sum(resid) / (3 + 3.0), 0.0]))


def test_user_residual_matches_the_numpy_check():
    """The model's per-view residual is the one training/propensity_tilt.py measured the
    signal with (the same lookup, the same leave-one-out), on a random log. They differ only
    by the model's one pseudo-view of the global profile in each per-N profile: ~1/200 of a
    profile at ~200 views per N here (thousands per N on KuaiRand), hence the tolerance."""
    import polars as pl

    from training.propensity_tilt import fractions, lookup

    g = torch.Generator().manual_seed(3)
    videos = torch.randint(1, N_VIDEOS, (1500,), generator=g)
    n_seg = (videos % S) + 1
    exits = (torch.rand(1500, generator=g) * (n_seg + 1)).long()
    table = pl.DataFrame(
        {"video_id": videos.numpy(), "n_segments": n_seg.numpy(), "exit_slot": exits.numpy()}
    )
    fit = torch.rand(1500, generator=g) < 0.8
    model = build(exit_prior=4.0, exit_prior_base="n_segments", user_tilt=1.0, user_tilt_shrink=0)
    n_table = exit_counts(n_seg[fit].numpy(), exits[fit].numpy(), S + 1, S)
    model.decoder.set_exit_counts(
        counts_of(videos[fit], exits[fit]), torch.as_tensor(n_table).float()
    )
    obs, frac = fractions(table, S)
    dist = lookup(table, fit.numpy(), 4.0, S)
    want = obs - (dist * frac).sum(1)
    # Each view alone as a one-view history (k0 = 0): R is that view's residual.
    rows = fit.nonzero()[:, 0]  # fitting rows: leave-one-out applies to them
    got = model.decoder.user_residual(
        videos[rows, None], exits[rows, None], n_seg[rows, None], torch.ones(len(rows), 1).bool()
    )
    torch.testing.assert_close(got, torch.as_tensor(want[rows.numpy()]).float(), atol=3e-3, rtol=0)


def test_user_tilt_enters_the_logits_and_keeps_the_cache_split():
    """user_tilt: logits gain R * (slot_features . w), w a parameter starting at -user_tilt
    on j / N; encode_user carries R in one extra masked token, so score(encode_user(...)) ==
    forward(...), also with one cached user broadcast over candidates."""
    model = tilt_model(dropout=0.0).eval()
    batch = make_batch(model.cfg, seed=6)
    assert "decoder.tilt" in dict(model.named_parameters())
    torch.testing.assert_close(model.decoder.tilt, torch.tensor([-2.0, 0.0, 0.0, 0.0]))
    with torch.no_grad():
        full = model(**batch)
        states, mask = model.encode_user(**user_part(batch))
        assert states.shape[3] == 2 + H and mask.shape == (B, 2 + H) and not mask[:, -1].any()
        r = model.decoder.user_residual(
            *model._clean_history(
                batch["hist_video_ids"], batch["hist_exit_slots"], batch["hist_n_segments"],
                batch["hist_mask"],
            )
        )  # fmt: skip
        torch.testing.assert_close(states[:, :, :, -1, 0], r[:, None, None].expand(-1, 1, 2))
        torch.testing.assert_close(model.score(states, mask, **video_part(batch)), full)
        one = {k: v[3:4] for k, v in user_part(batch).items()}
        cands = video_part(batch)
        wide = model.score(*model.encode_user(**one), **cands)
        copies = {k: v[3:4].expand(B, *v.shape[1:]) for k, v in user_part(batch).items()}
        torch.testing.assert_close(wide, model(**copies, **cands), atol=1e-5, rtol=0)
        model.decoder.tilt.zero_()
        flat = model(**batch)
    shape = slot_features(batch["n_segments"], S) @ torch.tensor([-2.0, 0.0, 0.0, 0.0])
    real = torch.arange(S)[None, :] <= batch["n_segments"][:, None]
    torch.testing.assert_close((full - flat)[real], (r[:, None] * shape)[real])
    assert (r[~batch["hist_mask"].any(1)] == 0).all() and (r != 0).any()


def test_user_tilt_config_is_checked():
    with pytest.raises(ValueError, match="exit_prior > 0"):
        tiny_config(user_tilt=1.0)
    with pytest.raises(ValueError, match="user_tilt_shrink"):
        tiny_config(exit_prior=1.0, user_tilt=1.0, user_tilt_shrink=-1.0)
    with pytest.raises(ValueError, match="user_tilt"):
        tiny_config(exit_prior=1.0, user_tilt=True)
    assert build(exit_prior=1.0).decoder.tilt is None
