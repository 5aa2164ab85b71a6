"""ONNX export: manifest, symbolic dims, and parity of ONNX Runtime with PyTorch.

Tolerance (``ATOL = RTOL = 1e-5``): ORT runs the same float32 math as PyTorch but fuses
operators (LayerNorm, GELU, MatMul+Add) and may sum in another order; each reordering moves a
result by a few float32 ulps (~1e-7 relative). Through two layers of attention and the decoder
the observed gap on logits of magnitude ~1-3 is <= 5e-7, so 1e-5 leaves 20x headroom, while a
real export bug (a specialized shape, a mask lost, the wrong slot, a NaN from a fully masked
row) changes logits by far more than 1e-2. Impossible slots (j > N) carry a constant 1e4 and
are compared too (rtol covers them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.contract import INT8_FILES
from export.fused import DEFERRED_LOGIT_LIMIT, attention_logit_bound
from export.manifest import Manifest, config_hash, files_fingerprint
from export.onnx import OPSET
from segint.heads import exit_distribution, outcome_mask
from tests.export.tiny import TINY, tiny_model

ATOL = RTOL = 1e-5
S = TINY["s_max"]


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def user_inputs(b: int, h: int, seed: int = 0, p_real: float = 0.7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(1, S + 1, (b, h), generator=g)
    return {
        "user_ids": torch.randint(0, 13, (b,), generator=g),
        "hist_video_ids": torch.randint(0, 29, (b, h), generator=g),
        "hist_exit_slots": (torch.rand(b, h, generator=g) * (n + 1)).long(),
        "hist_n_segments": n,
        "hist_mask": torch.rand(b, h, generator=g) < p_real,
    }


def as_numpy(feeds: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in feeds.items()}


def test_manifest_describes_the_artifact(self_artifact: Path) -> None:
    """The manifest pins opset/exporter and matches the files, config and vocabularies."""
    m = Manifest.read(self_artifact)
    assert m.opset == OPSET == 20
    assert "dynamo=True" in m.exporter and "external_data=False" in m.exporter
    assert (m.user_stream, m.s_max, m.d_model, m.history_len) == ("self", S, 12, 5)
    assert m.modalities == ("id",) and m.model_version == "tiny-self"
    assert m.config_hash == config_hash(m.config)
    files = [self_artifact / m.graphs[g].file for g in sorted(m.graphs)]
    assert m.fingerprint == files_fingerprint(files)
    assert not list(self_artifact.glob("*.data")), "weights must live inside the .onnx files"
    assert np.array_equal(np.load(self_artifact / m.vocab_users), np.arange(100, 112))
    scorer = m.graph("scorer")
    assert [i.name for i in scorer.inputs] == [
        "user_states",
        "user_mask",
        "video_ids",
        "n_segments",
        "slot_index",
    ]
    assert scorer.output("logits").shape == ("candidates", "slots")
    assert json.loads((self_artifact / "manifest.json").read_text())["format_version"] == 1
    # the scorer's softmax form and the weight bound that allowed it (export.fused)
    form = m.source["scorer_form"]
    assert form["softmax"] == "deferred" and form["limit"] == DEFERRED_LOGIT_LIMIT
    assert form["bound"] == round(attention_logit_bound(tiny_model("self")), 4)
    assert 0 < form["bound"] <= form["limit"]


def test_artifact_carries_the_int8_scorer_in_its_manifest(
    self_artifact: Path, cross_artifact: Path
) -> None:
    """The self-stream artifact has scorer.int8.onnx (quantised: MatMulInteger) beside
    scorer.onnx, listed under the manifest's precisions with the file's sha256 and the fp32
    scorer's inputs and outputs; the fingerprint stays over the fp32 graphs. The cross stream
    has no scorer, so no int8 form."""
    m = Manifest.read(self_artifact)
    variant = m.variant("scorer", "int8")
    assert variant is not None and variant.file == "scorer.int8.onnx" == INT8_FILES["scorer"]
    assert list(m.precisions) == ["int8"] and list(m.precisions["int8"]) == ["scorer"]
    path = self_artifact / variant.file
    assert variant.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(path)).graph.node}
    sess, fp32 = session(path), m.graph("scorer")
    assert [i.name for i in sess.get_inputs()] == [i.name for i in fp32.inputs]
    assert [o.name for o in sess.get_outputs()] == [o.name for o in fp32.outputs]
    assert m.variant("user_encoder", "int8") is None
    assert json.loads((self_artifact / "manifest.json").read_text())["precisions"] == {
        "int8": {"scorer": {"file": "scorer.int8.onnx", "sha256": variant.sha256}}
    }
    cross = Manifest.read(cross_artifact)
    assert cross.precisions == {} and not (cross_artifact / "scorer.int8.onnx").exists()


def test_exported_dims_are_symbolic(self_artifact: Path) -> None:
    """Batch, history, user-token, candidate and slot axes are named dims in the ONNX graphs."""

    def dims(path: Path) -> dict[str, list[str | int]]:
        graph = onnx.load(str(path)).graph
        return {
            v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]
        }

    enc = dims(self_artifact / "user_encoder.onnx")
    assert enc["user_ids"] == ["batch"]
    assert enc["hist_mask"] == ["batch", "history"]
    assert enc["user_states"][0] == "batch" and isinstance(enc["user_states"][3], str)
    sc = dims(self_artifact / "scorer.onnx")
    assert sc["user_states"] == [1, 1, TINY["n_layers"], "user_tokens", TINY["d_model"]]
    assert sc["user_mask"] == [1, "user_tokens"]
    assert sc["video_ids"] == ["candidates"] and sc["logits"] == ["candidates", "slots"]
    assert sc["slot_index"] == ["slots"]


@pytest.mark.parametrize(
    ("b", "h", "p_real"),
    [
        (1, 1, 1.0),  # batch 1 and history 1: both below the export sizes (3, 4)
        (7, 3, 0.7),  # many rows with padded histories
        (2, 9, 0.7),  # history longer than at export and than cfg.history_len
        (3, 4, 0.0),  # empty histories: every history token masked
    ],
)
def test_user_encoder_matches_pytorch(self_artifact: Path, b: int, h: int, p_real: float) -> None:
    """user_encoder.onnx == model.encode_user for batch/history sizes other than the export's."""
    model = tiny_model("self")
    feeds = user_inputs(b, h, seed=b * 10 + h, p_real=p_real)
    feeds["user_ids"][0] = 0  # an unknown user
    with torch.no_grad():
        states, mask = model.encode_user(**feeds)
    got_states, got_mask = session(self_artifact / "user_encoder.onnx").run(None, as_numpy(feeds))
    assert np.isfinite(got_states).all()
    np.testing.assert_array_equal(got_mask, mask.numpy())
    np.testing.assert_allclose(got_states, states.numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("c", [1, 2, 23])
def test_scorer_matches_pytorch(self_artifact: Path, c: int) -> None:
    """scorer.onnx == model.score for one user broadcast over C candidates, including
    one-segment videos, videos filling all S slots and unknown videos."""
    model = tiny_model("self")
    g = torch.Generator().manual_seed(c)
    with torch.no_grad():
        states, mask = model.encode_user(**user_inputs(1, 4, seed=c))
    video_ids = torch.randint(0, 29, (c,), generator=g)
    n_segments = torch.randint(1, S + 1, (c,), generator=g)
    n_segments[0] = 1
    video_ids[-1] = 0
    if c > 2:
        n_segments[1] = S
    with torch.no_grad():
        want = model.score(states, mask, video_ids, n_segments).numpy()
    feeds = {
        "user_states": states,
        "user_mask": mask,
        "video_ids": video_ids,
        "n_segments": n_segments,
        "slot_index": torch.arange(S),  # all slots: the padded model
    }
    (got,) = session(self_artifact / "scorer.onnx").run(None, as_numpy(feeds))
    assert got.shape == (c, S) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    # The derived serving heads and the thumbnail ranking agree as well.
    om = outcome_mask(n_segments.numpy(), S)
    np.testing.assert_allclose(exit_distribution(got, om), exit_distribution(want, om), atol=1e-5)
    for row in range(c):
        n = int(n_segments[row])
        assert list(np.argsort(-got[row, :n])[:3]) == list(np.argsort(-want[row, :n])[:3])


def test_onnx_chain_with_trimmed_history_matches_forward(self_artifact: Path) -> None:
    """What the service does: encode one user's real views only (no padding columns), score
    candidates with the cached states, and get the model's forward on the padded batch."""
    model = tiny_model("self")
    feeds = user_inputs(1, 5, seed=3, p_real=1.0)
    feeds["hist_mask"][0, 3:] = False  # two padding columns in the PyTorch batch
    c = 6
    video_ids = torch.arange(c) + 3
    n_segments = torch.tensor([1, 2, 3, 5, 7, 4])
    with torch.no_grad():
        want = model(
            **{k: v.expand(c, *v.shape[1:]) for k, v in feeds.items()},
            video_ids=video_ids,
            n_segments=n_segments,
        )
    trimmed = {k: v[:, :3] if v.dim() == 2 else v for k, v in feeds.items()}
    states, mask = session(self_artifact / "user_encoder.onnx").run(None, as_numpy(trimmed))
    (got,) = session(self_artifact / "scorer.onnx").run(
        None,
        {
            "user_states": states,
            "user_mask": mask,
            "video_ids": video_ids.numpy(),
            "n_segments": n_segments.numpy(),
            "slot_index": np.arange(S),
        },
    )
    np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.slow
@pytest.mark.parametrize(("b", "h", "p_real"), [(1, 2, 1.0), (9, 6, 0.6), (4, 3, 0.0)])
def test_cross_stream_model_matches_pytorch(
    cross_artifact: Path, b: int, h: int, p_real: float
) -> None:
    """model.onnx (cross stream) == model.forward, batch 1 and many, padded and empty."""
    model = tiny_model("cross")
    feeds = user_inputs(b, h, seed=b + h, p_real=p_real)
    g = torch.Generator().manual_seed(b)
    feeds["video_ids"] = torch.randint(0, 29, (b,), generator=g)
    feeds["n_segments"] = torch.randint(1, S + 1, (b,), generator=g)
    feeds["n_segments"][0] = 1
    with torch.no_grad():
        want = model(**feeds).numpy()
    (got,) = session(cross_artifact / "model.onnx").run(None, as_numpy(feeds))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    assert Manifest.read(cross_artifact).graph("model").input("hist_mask").shape == (
        "batch",
        "history",
    )
