"""/score's watch-time fields: the served median estimate, and the artifact's calibration
temperature applied to the exit distribution (real ONNX Runtime, in-process app)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from export.manifest import MANIFEST_FILE, Manifest
from segint.watchtime import slot_watch_ms
from service.app import create_app
from service.settings import Settings
from tests.service.reference import score_body

CANDIDATES = [(1001, 12000), (1002, 5000), (999, 34999), (1003, 4000)]  # 999: unknown video


def _score(settings: Settings) -> list[dict]:  # type: ignore[type-arg]
    with TestClient(create_app(settings)) as client:
        r = client.post("/score", json=score_body(101, CANDIDATES, None))
        assert r.status_code == 200, r.text
        return r.json()["candidates"]  # type: ignore[no-any-return]


def test_median_watch_ms_is_the_median_slot_of_the_distribution(
    make_settings: Callable[..., Settings],
) -> None:
    """median_watch_ms = watch time of the smallest slot reaching cumulative 1/2, beside the
    mean expected_watch_ms; both within the duration."""
    for c, (_, dur) in zip(_score(make_settings()), CANDIDATES, strict=True):
        dist = np.array(c["exit_distribution"])
        median = int(np.argmax(np.cumsum(dist) >= 0.5 - 1e-12))
        assert c["median_watch_ms"] == slot_watch_ms([median], [dur])[0]
        assert 0 < c["median_watch_ms"] <= dur and 0 < c["expected_watch_ms"] <= dur


def test_manifest_temperature_reshapes_the_distribution(
    self_artifact: Path, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """With watch_time.temperature = 2 in the manifest the exit distribution is
    softmax(-logits / 2), i.e. proportional to the square root of the T = 1 distribution;
    segment scores (raw logits) do not change."""
    artifact = tmp_path / "calibrated"
    shutil.copytree(self_artifact, artifact)
    raw = json.loads((artifact / MANIFEST_FILE).read_text())
    raw["watch_time"] = {"temperature": 2.0, "fitted_on": "test", "served_estimate": "median"}
    (artifact / MANIFEST_FILE).write_text(json.dumps(raw))
    assert Manifest.read(artifact).watch_time == raw["watch_time"]
    plain = _score(make_settings())
    hot = _score(make_settings(artifact_dir=artifact))
    for p, h in zip(plain, hot, strict=True):
        root = np.sqrt(np.array(p["exit_distribution"]))
        # the response carries float32 values (shortest form): compare at float32 precision
        np.testing.assert_allclose(h["exit_distribution"], root / root.sum(), rtol=1e-6)
        np.testing.assert_allclose(h["segment_scores"], p["segment_scores"], rtol=0, atol=0)


def _with_video_table(src: Path, dst: Path, weight: float) -> tuple[Path, np.ndarray, int]:
    """A copy of ``src`` whose manifest serves a per-video table: video 1001 (N = 3) gets a
    row for its N, video 1002 a row for another N (so it is not mixed). Returns the artifact,
    the table's distribution and 1001's vocabulary row."""
    from export.manifest import file_sha256
    from segint.video_table import VideoTable
    from segint.vocab import Vocab

    shutil.copytree(src, dst)
    raw = json.loads((dst / MANIFEST_FILE).read_text())
    videos = Vocab.load(dst / raw["vocab_videos"])
    s = raw["s_max"]
    dist = np.zeros((len(videos), s))
    n = np.zeros(len(videos), np.int64)
    i1001, i1002 = videos.lookup([1001, 1002]).tolist()
    assert i1001 > 0 and i1002 > 0, "the tiny artifact's vocabulary holds 1001 and 1002"
    dist[i1001, :4] = [0.1, 0.2, 0.3, 0.4]  # N = 3: outcomes 0..3
    n[i1001] = 3
    dist[i1002, :3] = [0.5, 0.25, 0.25]
    n[i1002] = 2  # the request's 1002 has N = 1: no mix
    path = VideoTable(dist, n, weight, {"fitted_on": "test"}).write(dst)
    raw["video_table"] = {"file": path.name, "sha256": file_sha256(path), "weight": weight}
    (dst / MANIFEST_FILE).write_text(json.dumps(raw))
    return dst, dist, i1001


def test_video_table_mixes_into_the_served_distribution(
    self_artifact: Path, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """With a manifest video_table of weight w, a candidate whose video has a row for its N is
    served (1 - w) p + w t, and its median, mean, completion and skip follow that mixture; the
    others (another N, an unknown video) and every segment score are unchanged; /healthz
    names the weight."""
    artifact, table, row = _with_video_table(self_artifact, tmp_path / "mixed", 0.25)
    plain = _score(make_settings())
    mixed = _score(make_settings(artifact_dir=artifact))
    want = 0.75 * np.array(plain[0]["exit_distribution"]) + 0.25 * table[row, :4]  # N + 1
    np.testing.assert_allclose(mixed[0]["exit_distribution"], want, rtol=1e-6, atol=1e-7)
    dur = CANDIDATES[0][1]
    median = int(np.argmax(np.cumsum(want) >= 0.5 - 1e-12))
    assert mixed[0]["median_watch_ms"] == slot_watch_ms([median], [dur])[0]
    assert mixed[0]["completion_probability"] == pytest.approx(want[3], rel=1e-6)
    assert mixed[0]["skip_probability"] == pytest.approx(1 - want[3], rel=1e-6)
    slots = slot_watch_ms(np.arange(4), np.full(4, dur))
    assert abs(mixed[0]["expected_watch_ms"] - float(want[:4] @ slots)) <= 1
    for p, m in zip(plain, mixed, strict=True):
        np.testing.assert_allclose(m["segment_scores"], p["segment_scores"], rtol=0, atol=0)
    for p, m in zip(plain[1:], mixed[1:], strict=True):
        assert m["exit_distribution"] == p["exit_distribution"]
        assert m["median_watch_ms"] == p["median_watch_ms"]
    with TestClient(create_app(make_settings(artifact_dir=artifact))) as client:
        assert client.get("/healthz").json()["video_table_weight"] == 0.25
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/healthz").json()["video_table_weight"] is None


def test_video_table_with_another_sha256_is_refused(self_artifact: Path, tmp_path: Path) -> None:
    """A table file that is not the one the manifest names is an artifact error at load."""
    from export.manifest import ArtifactError
    from service.ranker import Ranker

    artifact, _, _ = _with_video_table(self_artifact, tmp_path / "mixed", 0.5)
    raw = json.loads((artifact / MANIFEST_FILE).read_text())
    raw["video_table"]["sha256"] = "0" * 64
    (artifact / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        Ranker.load(artifact)
