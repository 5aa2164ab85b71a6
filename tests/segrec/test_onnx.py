"""The SegRec CTR head exports to ONNX (the artifact's pinned exporter, `export.ctr.export_head`)
and ONNX Runtime matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.ctr import export_head
from export.onnx import OPSET
from segrec.config import SegRecConfig
from segrec.network import SegRecModel
from segrec.onnx import INPUTS, CTRHead
from tests.segrec.test_network import batch

# features with the P(effective) column and a Platt scaling: both constants of the config
SERVED = {"effective_thresholds": (1.05, 0.8, 0.8, 0.5, 0.5, 0.3, 0.3), "calibration": (0.8, 0.1)}
# round 4: the dense features standardised by constants of the config (9 columns with P(eff.))
STANDARDISED = {
    "dense_center": (0.5, 0.4, 0.3, 0.1, 0.7, 0.8, 0.6, 0.4, 0.2),
    "dense_scale": (0.2, 0.25, 0.2, 0.1, 0.15, 0.1, 0.2, 0.2, 0.15),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "mode", "extra"),
    [
        ("widedeep", "segrec", {}),
        ("din", "segrec", {}),
        ("widedeep", "features", {}),
        ("din", "features", {}),
        ("din", "survival", {}),
        ("widedeep", "features", SERVED),
        ("din", "features", SERVED),
        ("din", "features", {**SERVED, "dense_linear": True}),
        ("din", "features", {**SERVED, "dense_both": True, **STANDARDISED}),
        ("widedeep", "features", {**SERVED, **STANDARDISED}),
    ],
)
def test_export_matches_torch(
    tmp_path: Path, backbone: str, mode: str, extra: dict[str, object]
) -> None:
    """Parity within 1e-5: float32 on both sides, the only difference is kernel summation order.

    Checked at the export batch and at other batch / history sizes, including one user
    without any history (DIN then has no (slot, view) pair at all).
    """
    torch.manual_seed(0)
    cfg = SegRecConfig(backbone, mode, n_users=11, n_videos=17, s_max=7, emb_dim=6, **extra)  # type: ignore[arg-type]
    model = SegRecModel(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    model.eval()
    x = batch()
    assert tuple(x) == INPUTS, "the batch's names are the contract's, in CTRHead's order"
    export_head(model, tmp_path / "ctr.onnx", OPSET)
    sess = ort.InferenceSession(str(tmp_path / "ctr.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(INPUTS)
    assert [o.name for o in sess.get_outputs()] == ["ctr"]
    head = CTRHead(model)
    for lo, b, h in [(0, 13, 5), (2, 4, 2), (2, 1, 1)]:  # row 2 has no history
        rows = slice(lo, lo + b)
        xs = {k: v[rows, :h] if k.startswith("hist") else v[rows] for k, v in x.items()}
        got = sess.run(["ctr"], {k: v.numpy() for k, v in xs.items()})[0]
        with torch.no_grad():
            want = head(**xs).numpy()
        assert got.shape == (b,)
        np.testing.assert_allclose(got, want, atol=1e-5)
