"""End to end over HTTP (real uvicorn, real ONNX Runtime): the SegRec CTR field and a content
model served from a segment feature store, configured through environment variables only."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.export.tiny_content import store_features
from tests.service.live import uvicorn_server
from tests.service.reference import ATOL, CTR_ATOL, RTOL, torch_ctr, torch_logits
from tests.service.test_content import CANDIDATES as CONTENT_CANDIDATES
from tests.service.test_content import HISTORY as CONTENT_HISTORY
from tests.service.test_content import MISSING
from tests.service.test_content import request as content_request
from tests.service.test_ctr import CANDIDATES, HISTORY, body


def sample(url: str, name: str, labels: dict[str, str]) -> float | None:
    """One sample of the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_ctr_over_http(ctr_artifact: Path, tmp_path: Path) -> None:
    """POST /score returns a ctr in (0, 1) per candidate, equal to the PyTorch models'."""
    with uvicorn_server({"SEGINT_ARTIFACT_DIR": str(ctr_artifact)}, tmp_path) as server:
        assert httpx.get(f"{server.url}/healthz").json()["ctr_head"] == "din/segrec"
        r = httpx.post(f"{server.url}/score", json=body(110), timeout=10)
        assert r.status_code == 200, r.text
        ctr = np.array([c["ctr"] for c in r.json()["candidates"]])
        assert ((ctr > 0) & (ctr < 1)).all()
        np.testing.assert_allclose(ctr, torch_ctr(110, HISTORY, CANDIDATES), atol=CTR_ATOL, rtol=0)
        assert sample(server.url, "segint_batch_size_count", {"graph": "ctr"}) == 1.0
    assert "Traceback" not in server.log_text(), server.log_text()


def test_content_model_over_http(
    content_self_artifact: Path, feature_store: Path, tmp_path: Path
) -> None:
    """SEGINT_FEATURE_STORE serves a content model: /healthz reports the store, scores equal
    PyTorch's, and candidates missing from the store get a 200 and are counted."""
    env = {
        "SEGINT_ARTIFACT_DIR": str(content_self_artifact),
        "SEGINT_FEATURE_STORE": str(feature_store),
    }
    with uvicorn_server(env, tmp_path) as server:
        health = httpx.get(f"{server.url}/healthz").json()
        assert health["feature_store_loaded"] is True and health["feature_store_videos"] == 22
        r = httpx.post(f"{server.url}/score", json=content_request(106), timeout=10)
        assert r.status_code == 200, r.text
        want = torch_logits(
            "self", 106, CONTENT_HISTORY, CONTENT_CANDIDATES, ("id", "content"), store_features(0)
        )
        for row, c in enumerate(r.json()["candidates"]):
            assert "ctr" not in c  # no CTR head
            np.testing.assert_allclose(
                c["segment_scores"], want[row, : c["n_segments"]], atol=ATOL, rtol=RTOL
            )
        labels = {"input": "candidate"}
        assert sample(server.url, "segint_content_missing_total", labels) == MISSING
    assert "Traceback" not in server.log_text(), server.log_text()
