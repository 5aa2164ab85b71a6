"""Content models served from a segment feature store: outputs equal PyTorch's for the same
features, missing videos are zeros and counted, the cached user state is tied to the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from export.manifest import ArtifactError
from segint.errors import SegintError
from segint.features import FeatureWriter, l1_normalize
from service.app import create_app
from service.settings import Settings
from tests.export.tiny_content import CONTENT_MODELS, cached_store, store_features
from tests.service.reference import ATOL, RTOL, history_items, score_body, torch_logits

# 1003 / 1019 / 5000 stored (5000 is a cold id with content), 1024 and 4242 not in the store.
CANDIDATES = [(1003, 34999), (1019, 12000), (5000, 20000), (1024, 9000), (4242, 5000)]
MISSING = 2
HISTORY = [(1012, 25000, 11000), (1025, 10000, 10000), (1005, 30000, 3000)]  # 1025 missing


def request(user_id: int, history: bool = True) -> dict[str, object]:
    return score_body(user_id, CANDIDATES, history_items(HISTORY, 100) if history else None)


def missing(kind: str) -> float:
    return REGISTRY.get_sample_value("segint_content_missing_total", {"input": kind}) or 0.0


def assert_matches(out: dict[str, Any], want: np.ndarray) -> None:
    for row, c in enumerate(out["candidates"]):
        np.testing.assert_allclose(
            c["segment_scores"], want[row, : c["n_segments"]], atol=ATOL, rtol=RTOL
        )


@pytest.fixture
def content_artifacts(content_self_artifact: Path, content_cross_artifact: Path) -> dict[str, Path]:
    return {"content-self": content_self_artifact, "content-cross": content_cross_artifact}


@pytest.mark.parametrize("name", sorted(CONTENT_MODELS))
def test_content_model_matches_pytorch(
    name: str,
    content_artifacts: dict[str, Path],
    make_settings: Callable[..., Settings],
    feature_store: Path,
) -> None:
    """Scores == PyTorch's forward with the same features; a candidate missing from the store
    still gets a 200 (zeros, as in training) and is counted, once per missing video."""
    stream, modalities = CONTENT_MODELS[name]
    settings = make_settings(artifact_dir=content_artifacts[name], feature_store=feature_store)
    before = missing("candidate"), missing("history")
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz").json()
        assert health["feature_store_loaded"] is True and health["feature_store_videos"] == 22
        r = client.post("/score", json=request(107))
        assert r.status_code == 200, r.text
    want = torch_logits(stream, 107, HISTORY, CANDIDATES, modalities, store_features(0))
    assert_matches(r.json(), want)
    assert missing("candidate") == before[0] + MISSING
    assert missing("history") == before[1] + 1  # 1025, once: the user side is computed once


def test_l1_setting_normalises_the_features(
    make_settings: Callable[..., Settings], content_self_artifact: Path, feature_store: Path
) -> None:
    """SEGINT_FEATURE_L1=true serves x / (|x|_1 + 1e-6), as a SegMM-trained model expects."""
    settings = make_settings(
        artifact_dir=content_self_artifact, feature_store=feature_store, feature_l1=True
    )
    with TestClient(create_app(settings)) as client:
        out = client.post("/score", json=request(103)).json()
    feats = {k: l1_normalize(v) for k, v in store_features(0).items()}
    assert_matches(out, torch_logits("self", 103, HISTORY, CANDIDATES, ("id", "content"), feats))


def test_cached_user_state_is_tied_to_the_store(
    make_settings: Callable[..., Settings],
    content_self_artifact: Path,
    artifact_cache: Path,
    feature_store: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """A user state cached under one store snapshot is stale under another: the second service
    keeps the cached history but recomputes the state from its own features."""
    other = cached_store(artifact_cache, 1)
    common = {
        "artifact_dir": content_self_artifact,
        "redis_url": redis_url,
        "key_prefix": redis_prefix,
    }
    stale = REGISTRY.get_sample_value("segint_fallback_total", {"reason": "stale_blob"}) or 0.0
    with TestClient(create_app(make_settings(feature_store=feature_store, **common))) as c:
        assert c.post("/score", json=request(104)).json()["history_source"] == "request"
    with TestClient(create_app(make_settings(feature_store=other, **common))) as c:
        out = c.post("/score", json=request(104, history=False)).json()
    assert out["history_source"] == "cache" and out["history_length"] == len(HISTORY)
    after = REGISTRY.get_sample_value("segint_fallback_total", {"reason": "stale_blob"})
    assert after == stale + 1
    feats = store_features(1)
    assert_matches(out, torch_logits("self", 104, HISTORY, CANDIDATES, ("id", "content"), feats))


def test_content_model_needs_a_matching_store(
    make_settings: Callable[..., Settings], content_self_artifact: Path, tmp_path: Path
) -> None:
    """No store, or one of another width, stops start-up with a message saying what to set."""
    with pytest.raises(ArtifactError, match="SEGINT_FEATURE_STORE"):
        with TestClient(create_app(make_settings(artifact_dir=content_self_artifact))):
            pass
    with FeatureWriter(tmp_path / "narrow", 4) as w:
        w.add(1003, np.ones((2, 4)))
    settings = make_settings(artifact_dir=content_self_artifact, feature_store=tmp_path / "narrow")
    with pytest.raises(SegintError, match="dim 4, the model wants 6"):
        with TestClient(create_app(settings)):
            pass


def test_id_model_ignores_a_store(
    make_settings: Callable[..., Settings], feature_store: Path
) -> None:
    """A store configured for a model without content is not loaded, and /healthz says so."""
    with TestClient(create_app(make_settings(feature_store=feature_store))) as client:
        health = client.get("/healthz").json()
        assert health["feature_store_loaded"] is False and health["feature_store_videos"] is None
        assert client.post("/score", json=request(107)).status_code == 200
