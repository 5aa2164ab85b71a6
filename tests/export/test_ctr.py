"""`segint export --segrec`: the SegRec CTR head in the artifact, its parity with PyTorch, and
the SegRec runs the export refuses.

Tolerance (``CTR_ATOL = 1e-6`` on probabilities in (0, 1)): the head is float32 on both sides;
ORT fuses and reorders the MLP, attention-unit and softmax sums, which moves the logit by a few
ulps and the sigmoid by less (its slope is <= 1/4). The observed gap is <= 1.2e-7 over 200
random batches; a real bug (a history column or slot mask lost, the wrong vocabulary, softmax
over padding slots) moves the CTR by 1e-3 or more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.ctr import CTR_INPUTS, example_inputs, export_head
from export.manifest import Manifest, config_hash, files_fingerprint
from export.onnx import OPSET
from segint.cli import main
from segrec.network import DIN
from segrec.onnx import CTRHead
from tests.export.tiny import TINY
from tests.export.tiny_ctr import CTR, CTR_USERS, CTR_VIDEOS, tiny_segrec, write_segrec_run
from tests.service.reference import CTR_ATOL

S = int(TINY["s_max"])


def test_manifest_records_the_ctr_head(ctr_artifact_and_run: tuple[Path, Path]) -> None:
    """Mode, backbone, history length, config hash, source runs and vocabularies are recorded;
    the graph's inputs are the interest inputs plus interest_logits, with symbolic axes."""
    artifact, segrec_run = ctr_artifact_and_run
    m = Manifest.read(artifact)
    assert m.ctr is not None and sorted(m.graphs) == ["ctr", "scorer", "user_encoder"]
    assert (m.ctr.backbone, m.ctr.mode, m.ctr.history_len) == ("din", "segrec", 6)
    assert m.ctr.config_hash == config_hash(m.ctr.config) and m.ctr.config["emb_dim"] == 6
    assert m.ctr.source["run_dir"] == str(segrec_run.resolve())
    saved = json.loads((segrec_run / "segrec.json").read_text())
    assert m.ctr.source["interest_model"] == saved["interest_model"]
    assert m.ctr.label == saved["label"]
    np.testing.assert_array_equal(np.load(artifact / m.ctr.vocab_users), CTR_USERS.ids)
    np.testing.assert_array_equal(np.load(artifact / m.ctr.vocab_videos), CTR_VIDEOS.ids)
    graph = m.graph("ctr")
    assert [t.name for t in graph.inputs] == list(CTR_INPUTS)
    assert graph.input("hist_mask").shape == ("batch", "history")
    assert graph.input("interest_logits").shape == ("batch", S)
    assert graph.output("ctr").shape == ("batch",) and graph.output("ctr").dtype == "float32"
    files = [artifact / m.graphs[g].file for g in sorted(m.graphs)]
    assert m.fingerprint == files_fingerprint(files), "the fingerprint must cover ctr.onnx"
    dims = onnx.load(str(artifact / "ctr.onnx")).graph.input
    assert [d.dim_param for d in dims[3].type.tensor_type.shape.dim] == ["batch", "history"]


@pytest.mark.parametrize(
    ("b", "h", "p_real"),
    [(1, 1, 1.0), (13, 5, 0.7), (4, 9, 0.5), (3, 2, 0.0)],  # batch 1, many, long, no history
)
def test_ctr_graph_matches_pytorch(ctr_artifact: Path, b: int, h: int, p_real: float) -> None:
    """ctr.onnx == sigmoid(SegRecModel(...)) at batch / history sizes other than the export's,
    with unknown ids, one-segment and full-length videos and users without any history."""
    model = CTRHead(tiny_segrec())
    x = example_inputs(model.model.cfg, rows=b, history=h, seed=b * 7 + h)
    g = torch.Generator().manual_seed(b)
    x["hist_mask"] = torch.rand(b, h, generator=g) < p_real
    x["interest_logits"] = torch.randn(b, S, generator=g) * 3
    x["n_segments"][0] = 1
    x["video_ids"][-1] = 0
    if b > 2:
        x["n_segments"][1] = S
    with torch.no_grad():
        want = model(**x).numpy()
    sess = ort.InferenceSession(str(ctr_artifact / "ctr.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["ctr"], {k: v.numpy() for k, v in x.items()})
    assert got.shape == (b,) and ((got > 0) & (got < 1)).all()
    np.testing.assert_allclose(got, want, atol=CTR_ATOL, rtol=0)


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_export_refuses_a_segrec_run_of_another_interest_model(
    tmp_path: Path, ctr_artifact_and_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A segrec-mode head trained on other interest logits (or not recording them), an
    itemposition head and a head for another slot count are exit 2, one line, no artifact."""
    artifact, _ = ctr_artifact_and_run
    interest = Path(Manifest.read(artifact).source["run_dir"])
    other = tmp_path / "other-interest"
    other.mkdir()
    cases = {
        "not of the exported model": write_segrec_run(tmp_path / "a", other),
        "does not record its interest model": write_segrec_run(tmp_path / "b", None),
        "itemposition": write_segrec_run(tmp_path / "c", None, "widedeep", "itemposition"),
    }
    out = tmp_path / "artifact"
    for message, run in cases.items():
        args = ["export", "--model", str(interest), "--segrec", str(run), "--out", str(out)]
        assert message in _refused(args, capsys)
    args = [
        "export",
        "--model",
        str(interest),
        "--segrec",
        str(tmp_path / "nope"),
        "--out",
        str(out),
    ]
    assert "not a SegRec run" in _refused(args, capsys)
    assert not out.exists() and not list(tmp_path.glob(".artifact.*"))


def test_export_refuses_another_slot_count(
    tmp_path: Path, ctr_artifact_and_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A head built for another S cannot read the interest model's (C, S) logits."""
    from segrec.config import SegRecConfig
    from segrec.network import SegRecModel
    from segrec.train import MODEL_FILE

    artifact, segrec_run = ctr_artifact_and_run
    interest = Path(Manifest.read(artifact).source["run_dir"])
    run = tmp_path / "s9"
    write_segrec_run(run, interest)
    raw = json.loads((run / "segrec.json").read_text())
    raw["model"]["s_max"] = S + 2
    (run / "segrec.json").write_text(json.dumps(raw))
    torch.save(SegRecModel(SegRecConfig.from_dict(raw["model"])).state_dict(), run / MODEL_FILE)
    args = ["export", "--model", str(interest), "--segrec", str(run), "--out", str(tmp_path / "a")]
    assert f"s_max {S + 2}" in _refused(args, capsys)


@pytest.mark.slow
def test_export_command_with_a_baseline_head(
    tmp_path: Path, ctr_artifact_and_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`segint export --segrec` with a WideDeep SegSum head (no interest model needed): exit 0,
    ctr.onnx and the head's vocabularies in the artifact, the mode in manifest and output."""
    artifact, _ = ctr_artifact_and_run
    interest = Path(Manifest.read(artifact).source["run_dir"])
    run = write_segrec_run(tmp_path / "segsum", None, "widedeep", "segsum")
    out = tmp_path / "v2"
    capsys.readouterr()
    assert main(["export", "--model", str(interest), "--segrec", str(run), "--out", str(out)]) == 0
    assert "CTR head widedeep/segsum" in capsys.readouterr().out
    m = Manifest.read(out)
    assert m.ctr is not None and (m.ctr.backbone, m.ctr.mode) == ("widedeep", "segsum")
    assert m.ctr.source["interest_model"] is None
    assert {"ctr.onnx", "ctr_vocab_users.npy", "ctr_vocab_videos.npy"} <= {
        p.name for p in out.iterdir()
    }
    assert CTR["history_len"] == m.ctr.history_len


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "mode"), [("din", "features"), ("widedeep", "survival")])
def test_export_command_with_an_interest_variant_head(
    tmp_path: Path,
    ctr_artifact_and_run: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    backbone: str,
    mode: str,
) -> None:
    """The interest variants export with the same eight inputs (the features / survival
    weights are computed inside the graph from interest_logits), the manifest and the export
    output name the variant, and ORT matches PyTorch; one not recording its interest model is
    refused."""
    artifact, _ = ctr_artifact_and_run
    interest = Path(Manifest.read(artifact).source["run_dir"])
    run = write_segrec_run(tmp_path / mode, interest, backbone, mode)
    out = tmp_path / "v3"
    capsys.readouterr()
    assert main(["export", "--model", str(interest), "--segrec", str(run), "--out", str(out)]) == 0
    assert f"CTR head {backbone}/{mode}" in capsys.readouterr().out
    m = Manifest.read(out)
    assert m.ctr is not None and (m.ctr.backbone, m.ctr.mode) == (backbone, mode)
    assert [t.name for t in m.graph("ctr").inputs] == list(CTR_INPUTS)
    assert {"crossfit", "valid_auc"} <= set(m.ctr.source)
    model = CTRHead(tiny_segrec(backbone, mode))
    x = example_inputs(model.model.cfg, rows=5, history=3, seed=11)
    x["interest_logits"] = torch.randn(5, S, generator=torch.Generator().manual_seed(5)) * 3
    x["n_segments"][0], x["n_segments"][1] = 1, S
    with torch.no_grad():
        want = model(**x).numpy()
    sess = ort.InferenceSession(str(out / "ctr.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["ctr"], {k: v.numpy() for k, v in x.items()})
    np.testing.assert_allclose(got, want, atol=CTR_ATOL, rtol=0)
    bad = write_segrec_run(tmp_path / "bad", None, backbone, mode)
    args = ["export", "--model", str(interest), "--segrec", str(bad), "--out", str(tmp_path / "b")]
    assert "does not record its interest model" in _refused(args, capsys)


def test_a_din_head_is_exported_with_its_first_layer_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export_head writes DIN's inference form (no concatenation of the [q, k, q - k, q * k]
    pairs: `segrec.network.DIN.split_first_layer`) and leaves the run's model as it is; the
    graph's parity with the unsplit model is test_ctr_graph_matches_pytorch."""

    def pair_concats(path: Path) -> int:  # Concats that take a difference (q - k)
        graph = onnx.load(str(path)).graph
        subs = {o for n in graph.node if n.op_type == "Sub" for o in n.output}
        return sum(n.op_type == "Concat" and bool(subs & set(n.input)) for n in graph.node)

    model = tiny_segrec()
    export_head(model, tmp_path / "ctr.onnx", OPSET)
    assert model.backbone.split_first is None
    assert pair_concats(tmp_path / "ctr.onnx") == 0
    monkeypatch.setattr(DIN, "split_first_layer", lambda self: None)  # the training form
    export_head(model, tmp_path / "unsplit.onnx", OPSET)
    assert pair_concats(tmp_path / "unsplit.onnx") == 1
