"""`segint export` on a training run directory."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from export.manifest import Manifest
from segint.cli import main
from tests.export.tiny import tiny_model, write_run


@pytest.mark.slow
def test_export_command_writes_an_artifact_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 with the artifact; exporting over it again without --force is exit 2, one line."""
    run = write_run(tmp_path / "run", tiny_model("self"))
    out = tmp_path / "artifacts" / "v7"
    assert main(["export", "--model", str(run), "--out", str(out)]) == 0
    m = Manifest.read(out)
    assert m.model_version == "v7"
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "scorer.int8.onnx",
        "scorer.onnx",
        "user_encoder.onnx",
        "vocab_users.npy",
        "vocab_videos.npy",
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["v7"], "temporary folder left behind"
    capsys.readouterr()
    assert main(["export", "--model", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1


def test_export_without_the_quantiser_is_exit_2_before_any_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No onnxruntime.quantization (a venv with the train extra only): exit 2, one line naming
    it and the extra to install, and no artifact folder."""
    run = write_run(tmp_path / "run", tiny_model("self"))
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # import fails
    code = main(["export", "--model", str(run), "--out", str(tmp_path / "artifacts" / "v1")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "onnxruntime.quantization" in err and "export-cpu" in err
    assert not (tmp_path / "artifacts").exists()


def test_export_command_rejects_a_missing_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that is not a training run is exit 2 with one line naming it."""
    code = main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_export_carries_the_run_calibration_into_the_manifest(tmp_path: Path) -> None:
    """RUN/calibration.json (from `segint evaluate`) becomes the manifest's watch_time entry;
    a run without one exports watch_time null (the service then uses temperature 1)."""
    from segint.watchtime import Calibration

    run = write_run(tmp_path / "run", tiny_model("self"))
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "plain")]) == 0
    assert Manifest.read(tmp_path / "plain").watch_time is None
    cal = Calibration(1.7, fitted_on="validation rows", rows=9, nll_before=2.0, nll_after=1.9)
    cal.write(run)
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "cal")]) == 0
    assert Manifest.read(tmp_path / "cal").watch_time == cal.to_dict()


@pytest.mark.slow
def test_export_carries_the_run_video_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RUN/video_trees.npz is copied into the artifact and named in the manifest with its
    sha256 and weight; a table of another vocabulary size is exit 2 with one line."""
    import numpy as np

    from export.manifest import file_sha256
    from segint.video_table import TABLE_FILE, VideoTable
    from segint.vocab import Vocab

    run = write_run(tmp_path / "run", tiny_model("self"))
    n_videos = len(Vocab.load(run / "vocab_videos.npy"))
    model_s = tiny_model("self").cfg.s_max
    dist = np.full((n_videos, model_s), 1.0 / model_s)
    table = VideoTable(dist, np.full(n_videos, model_s), 0.5, {"fitted_on": "test"})
    table.write(run)
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "a")]) == 0
    entry = Manifest.read(tmp_path / "a").video_table
    assert entry is not None and entry["file"] == TABLE_FILE and entry["weight"] == 0.5
    assert entry["sha256"] == file_sha256(tmp_path / "a" / TABLE_FILE)
    assert entry["videos"] == n_videos and entry["fitted"] == {"fitted_on": "test"}
    VideoTable(dist[:-1], np.full(n_videos - 1, model_s), 0.5).write(run)
    capsys.readouterr()
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "vocabulary videos" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_export_leaves_an_artifact_other_users_can_read(tmp_path: Path) -> None:
    """The artifact folder is 0755 and its files 0644, even under umask 077: the serving
    image runs as another user (uid 10001) and reads a bind-mounted artifacts/ folder."""
    run = write_run(tmp_path / "run", tiny_model("self"))
    out = tmp_path / "artifacts" / "v1"
    old = os.umask(0o077)
    try:
        assert main(["export", "--model", str(run), "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
