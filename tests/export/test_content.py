"""Export of content models: the content inputs are graph inputs with symbolic axes, the
feature-store facts are in the manifest, and ONNX Runtime matches PyTorch (tolerance as in
test_onnx.py: ``ATOL = RTOL = 1e-5``, observed <= 5e-7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.manifest import Manifest
from tests.export.test_onnx import ATOL, RTOL, as_numpy, user_inputs
from tests.export.tiny import CONTENT_DIM, TINY, tiny_model

S = int(TINY["s_max"])


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def content(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, CONTENT_DIM, generator=torch.Generator().manual_seed(seed))


def test_manifest_of_content_models(
    content_self_artifact: Path, content_cross_artifact: Path
) -> None:
    """Modalities, the content inputs' shapes and the run's feature settings are recorded."""
    m = Manifest.read(content_self_artifact)
    assert m.modalities == ("id", "content") and m.config["content_dim"] == CONTENT_DIM
    assert m.features == {"l1_normalize": False, "store": ""}
    enc, sc = m.graph("user_encoder"), m.graph("scorer")
    assert enc.input("hist_content").shape == ("batch", "history", CONTENT_DIM)
    assert sc.input("video_content").shape == ("candidates", "slots", CONTENT_DIM)
    cross = Manifest.read(content_cross_artifact)
    assert cross.modalities == ("content",) and cross.features is not None
    model = cross.graph("model")
    assert model.input("hist_content").shape == ("batch", "history", CONTENT_DIM)
    assert model.input("video_content").shape == ("batch", S, CONTENT_DIM)


@pytest.mark.parametrize(("c", "h", "p_real"), [(1, 1, 1.0), (9, 4, 0.6), (3, 3, 0.0)])
def test_self_content_graphs_match_pytorch(
    content_self_artifact: Path, c: int, h: int, p_real: float
) -> None:
    """user_encoder.onnx + scorer.onnx == forward of the id + content model with hist_content
    and video_content, for one user over C candidates (padded and empty histories)."""
    model = tiny_model("self", modalities=("id", "content"))
    user = user_inputs(1, h, seed=c + h, p_real=p_real)
    user["hist_content"] = content((1, h), seed=c)
    g = torch.Generator().manual_seed(c)
    video_ids = torch.randint(0, 29, (c,), generator=g)
    n_segments = torch.randint(1, S + 1, (c,), generator=g)
    n_segments[0] = 1
    video_content = content((c, S), seed=c + 1)
    with torch.no_grad():
        want = model(
            **{k: v.expand(c, *v.shape[1:]) for k, v in user.items()},
            video_ids=video_ids,
            n_segments=n_segments,
            video_content=video_content,
        ).numpy()
    states, mask = session(content_self_artifact / "user_encoder.onnx").run(None, as_numpy(user))
    scorer = session(content_self_artifact / "scorer.onnx")
    feeds = {
        "user_states": states,
        "user_mask": mask,
        "video_ids": video_ids.numpy(),
        "n_segments": n_segments.numpy(),
    }
    (got,) = scorer.run(
        None, feeds | {"video_content": video_content.numpy(), "slot_index": np.arange(S)}
    )
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    # Ragged: the first T slots of the content only, equal on every real slot and outcome.
    width = min(int(n_segments.max()) + 1, S)
    (ragged,) = scorer.run(
        None,
        feeds | {"video_content": video_content[:, :width].numpy(), "slot_index": np.arange(width)},
    )
    for i, n in enumerate(n_segments.tolist()):
        k = min(n + 1, S)
        np.testing.assert_allclose(ragged[i, :k], want[i, :k], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("b", "h", "p_real"), [(1, 2, 1.0), (6, 5, 0.6), (4, 3, 0.0)])
def test_cross_content_model_matches_pytorch(
    content_cross_artifact: Path, b: int, h: int, p_real: float
) -> None:
    """model.onnx of the content-only cross model == forward (the content inputs come after
    the candidate inputs in forward's signature; a positional mix-up fails here)."""
    model = tiny_model("cross", modalities=("content",))
    feeds = user_inputs(b, h, seed=b * 3 + h, p_real=p_real)
    g = torch.Generator().manual_seed(b)
    feeds["video_ids"] = torch.randint(0, 29, (b,), generator=g)
    feeds["n_segments"] = torch.randint(1, S + 1, (b,), generator=g)
    feeds["hist_content"] = content((b, h), seed=b)
    feeds["video_content"] = content((b, S), seed=b + 1)
    with torch.no_grad():
        want = model(**feeds).numpy()
    (got,) = session(content_cross_artifact / "model.onnx").run(None, as_numpy(feeds))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
