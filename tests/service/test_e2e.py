"""End to end: a real uvicorn server, real Redis, real ONNX Runtime, over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from export.manifest import Manifest
from service.history import decode_blob
from tests.service.live import ROOT, Server, redis_key_prefix, redis_process, uvicorn_server
from tests.service.reference import ATOL, RTOL, score_body, torch_logits

CANDIDATES = [(1001, 12000), (1007, 30000), (4242, 8000)]


def score(url: str, user_id: int, history: list[dict[str, int]] | None = None) -> dict:  # type: ignore[type-arg]
    r = httpx.post(f"{url}/score", json=score_body(user_id, CANDIDATES, history), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def post_view(url: str, user_id: int, video_id: int, play_ms: int, time_ms: int) -> dict:  # type: ignore[type-arg]
    body = {
        "user_id": user_id,
        "video_id": video_id,
        "duration_ms": 12000,
        "play_time_ms": play_ms,
        "time_ms": time_ms,
    }
    r = httpx.post(f"{url}/events/view", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def prefix(redis_url: str) -> Iterator[str]:
    with redis_key_prefix(redis_url) as p:
        yield p


@pytest.fixture(scope="module")
def live(
    self_artifact: Path, redis_url: str, prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service on the shared test Redis, under a unique key prefix removed afterwards."""
    env = {
        "SEGINT_ARTIFACT_DIR": str(self_artifact),
        "SEGINT_REDIS_URL": redis_url,
        "SEGINT_KEY_PREFIX": prefix,
    }
    with uvicorn_server(env, tmp_path_factory.mktemp("live")) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


def test_view_events_update_the_redis_blob_and_the_scores(
    live: Server, redis_url: str, prefix: str, self_artifact: Path
) -> None:
    """Events land in the user's one Redis blob (with TTL); scores follow and equal PyTorch."""
    before = score(live.url, 104)
    assert before["history_length"] == 0 and not before["cache_degraded"]
    post_view(live.url, 104, 1005, 7000, 1000)
    post_view(live.url, 104, 1006, 12000, 2000)
    assert post_view(live.url, 104, 1006, 12000, 2000)["applied"] is False  # idempotent
    client = redis.Redis.from_url(redis_url)
    key = f"{prefix}:vtiny-self:user:{{104}}"
    blob = client.get(key)
    assert blob is not None and 0 < client.ttl(key) <= 7 * 24 * 3600
    fingerprint = bytes.fromhex(Manifest.read(self_artifact).fingerprint[:16])
    assert decode_blob(blob, fingerprint).history.video_ids.tolist() == [1006, 1005]
    client.close()
    after = score(live.url, 104)
    assert after["history_source"] == "cache" and after["history_length"] == 2
    assert after["candidates"] != before["candidates"]
    want = torch_logits("self", 104, [(1006, 12000, 12000), (1005, 12000, 7000)], CANDIDATES)
    for row, c in enumerate(after["candidates"]):
        np.testing.assert_allclose(
            c["segment_scores"], want[row, : c["n_segments"]], atol=ATOL, rtol=RTOL
        )


def test_request_history_matches_pytorch_over_http(live: Server) -> None:
    """A new user's request history seeds the cache; outputs equal the PyTorch model's."""
    history = [{"video_id": 1012, "duration_ms": 25000, "play_time_ms": 11000, "time_ms": 9}]
    out = score(live.url, 108, history)
    assert out["history_source"] == "request"
    want = torch_logits("self", 108, [(1012, 25000, 11000)], CANDIDATES)
    for row, c in enumerate(out["candidates"]):
        np.testing.assert_allclose(
            c["segment_scores"], want[row, : c["n_segments"]], atol=ATOL, rtol=RTOL
        )


def test_bad_requests_get_422_over_http(live: Server) -> None:
    """Validation errors reach the client as 422 naming the field, never a 500."""
    r = httpx.post(
        f"{live.url}/score",
        json={"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 10**9}]},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body",
        "candidates",
        0,
        "duration_ms",
    ]
    r = httpx.post(
        f"{live.url}/thumbnail", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = httpx.post(f"{live.url}/events/view", json={"user_id": "x"})
    assert r.status_code == 422 and ["body", "user_id"] in [e["loc"] for e in r.json()["detail"]]


def test_importing_the_service_does_not_import_torch(self_artifact: Path) -> None:
    """The service package, app, lifespan and a scoring call never load torch or model/."""
    code = f"""
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
with TestClient(create_app(Settings(artifact_dir={str(self_artifact)!r}, gc_freeze=False))) as c:
    assert c.post("/score", json={{"user_id": 1, "candidates": [{{"video_id": 1, "duration_ms": 9}}]}}).status_code == 200
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "model")))
assert not leaked, leaked
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_redis_outage_degrades_without_errors_and_loses_nothing(
    self_artifact: Path, tmp_path: Path
) -> None:
    """Redis paused, then killed: every request still succeeds, flagged degraded and counted;
    views recorded during the pause reach Redis once it answers again."""
    with redis_process() as rp:
        env = {
            "SEGINT_ARTIFACT_DIR": str(self_artifact),
            "SEGINT_REDIS_URL": rp.url,
            "SEGINT_REDIS_TIMEOUT_S": "0.1",
            "SEGINT_REDIS_RETRY_AFTER_S": "0.3",
        }
        with uvicorn_server(env, tmp_path) as live:
            assert post_view(live.url, 105, 1001, 3000, 100)["cache_degraded"] is False
            os.kill(rp.proc.pid, signal.SIGSTOP)  # unreachable: calls time out
            try:
                assert score(live.url, 105)["cache_degraded"] is True
                during = post_view(live.url, 105, 1002, 9000, 200)
                assert during["cache_degraded"] is True and during["applied"] is True
                assert score(live.url, 106)["cache_degraded"] is True  # unknown to the fallback
                ready = httpx.get(f"{live.url}/readyz", timeout=5).json()
                assert ready["ready"] is True and ready["degraded"] is True
            finally:
                os.kill(rp.proc.pid, signal.SIGCONT)
            # The pending view is replayed into Redis by the background task.
            client = redis.Redis.from_url(rp.url)
            key = "segint:vtiny-self:user:{105}"
            deadline = time.monotonic() + 15
            while True:
                blob = client.get(key)
                if blob is not None and decode_blob(blob, None).history.video_ids.tolist() == [
                    1002,
                    1001,
                ]:
                    break
                assert time.monotonic() < deadline, (
                    "the view recorded during the outage never reached Redis"
                )
                time.sleep(0.2)
            out = score(live.url, 105)
            assert out["history_length"] == 2 and out["cache_degraded"] is False
            rp.proc.kill()  # gone for good: connection refused
            rp.proc.wait()
            assert score(live.url, 105)["cache_degraded"] is True
            assert post_view(live.url, 105, 1003, 1000, 300)["cache_degraded"] is True
            metrics = httpx.get(f"{live.url}/metrics").text
            assert 'segint_fallback_total{reason="redis_error"}' in metrics
            assert "segint_redis_up 0.0" in metrics
        log = live.log_text()
        assert "Traceback" not in log, log
