"""/score's watch-time fields: the served median estimate, and the artifact's calibration
temperature applied to the exit distribution (real ONNX Runtime, in-process app)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
