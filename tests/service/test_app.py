"""The HTTP API in process (TestClient): real ONNX Runtime sessions, in-process cache."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.app import create_app
from service.history import History, UserState, encode_blob
from service.settings import Settings
from tests.service.reference import ATOL, RTOL, score_body, torch_logits

S = 7
MAX_MS = S * 5000 - 1
CANDIDATES = [(1001, 12000), (1002, 5000), (999, 34999), (1003, 4000)]  # 999: unknown video


def score(client: TestClient, user_id: int, history: list[dict[str, int]] | None = None) -> dict:  # type: ignore[type-arg]
    r = client.post("/score", json=score_body(user_id, CANDIDATES, history))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def view(video_id: int, play_time_ms: int, time_ms: int, user_id: int = 101) -> dict[str, int]:
    return {
        "user_id": user_id,
        "video_id": video_id,
        "duration_ms": 12000,
        "play_time_ms": play_time_ms,
        "time_ms": time_ms,
    }


def test_score_returns_every_head_per_candidate(client: TestClient) -> None:
    """N scores, N+1 outcomes summing to 1 (N when N = S), heads consistent, cold flags set."""
    out = score(client, 5555)  # unknown user
    assert out["model_version"] == "tiny-self" and out["history_source"] == "empty"
    assert out["user_unknown"] is True
    cands = out["candidates"]
    assert [c["video_id"] for c in cands] == [v for v, _ in CANDIDATES]
    assert [c["n_segments"] for c in cands] == [3, 1, 7, 1]
    for c in cands:
        n, dist = c["n_segments"], c["exit_distribution"]
        assert len(c["segment_scores"]) == n
        assert len(dist) == (n + 1 if n < S else n)
        assert abs(sum(dist) - 1) < 1e-6 and min(dist) >= 0  # float32 values
        assert 0 <= c["predicted_exit_slot"] <= n
        assert c["completion_probability"] == (dist[n] if n < S else 0.0)
        assert "user_unknown" not in c  # one request-level flag (below)
    assert [c["video_unknown"] for c in cands] == [False, False, True, False]
    assert 0 < cands[0]["expected_watch_ms"] <= 12000


def test_score_matches_pytorch_and_runs_the_model_once_per_request(client: TestClient) -> None:
    """Scores equal model.forward within the parity tolerance; one scorer run for all
    candidates, and the user side is computed once per user (cached afterwards)."""
    history = [
        {"video_id": 1004, "duration_ms": 20000, "play_time_ms": 9000, "time_ms": 300},
        {"video_id": 1010, "duration_ms": 6000, "play_time_ms": 6000, "time_ms": 200},
        {"video_id": 77, "duration_ms": 30000, "play_time_ms": 100, "time_ms": 100},
    ]

    def counts() -> tuple[float, float, float]:
        return (
            sample("segint_batch_size_count", graph="user_encoder"),
            sample("segint_batch_size_count", graph="scorer"),
            sample("segint_batch_size_sum", graph="scorer"),
        )

    enc0, runs0, rows0 = counts()
    first = score(client, 103, history)
    second = score(client, 103)  # no history: the cached state from the first request
    assert (first["history_source"], second["history_source"]) == ("request", "cache")
    assert first["candidates"] == second["candidates"]
    enc1, runs1, rows1 = counts()
    assert enc1 - enc0 == 1
    assert (runs1 - runs0, rows1 - rows0) == (2, 2 * len(CANDIDATES))
    want = torch_logits(
        "self",
        103,
        [(h["video_id"], h["duration_ms"], h["play_time_ms"]) for h in history],
        CANDIDATES,
    )
    for row, c in enumerate(first["candidates"]):
        np.testing.assert_allclose(
            c["segment_scores"], want[row, : c["n_segments"]], atol=ATOL, rtol=RTOL
        )


def test_view_events_change_history_and_scores_idempotently(client: TestClient) -> None:
    """A view appends to the cached history and changes the scores; replaying it does not."""
    before = score(client, 101)
    r1 = client.post("/events/view", json=view(1005, 7000, 1000))
    again = client.post("/events/view", json=view(1005, 7000, 1000))
    r2 = client.post("/events/view", json=view(1006, 12000, 2000))
    assert r1.json() == {
        "user_id": 101,
        "applied": True,
        "history_length": 1,
        "cache_degraded": False,
    }
    assert again.json()["applied"] is False and again.json()["history_length"] == 1
    assert r2.json()["history_length"] == 2
    after = score(client, 101)
    assert after["history_source"] == "cache" and after["history_length"] == 2
    assert after["candidates"][0]["segment_scores"] != before["candidates"][0]["segment_scores"]
    want = torch_logits("self", 101, [(1006, 12000, 12000), (1005, 12000, 7000)], CANDIDATES)
    np.testing.assert_allclose(
        after["candidates"][0]["segment_scores"], want[0, :3], atol=ATOL, rtol=RTOL
    )


def test_view_events_need_the_api_key_when_one_is_set(
    make_settings: Callable[..., Settings],
) -> None:
    """401 without or with a wrong X-API-Key; scoring needs no key."""
    with TestClient(create_app(make_settings(api_key="s3cret"))) as c:
        assert c.post("/events/view", json=view(1005, 7000, 1)).status_code == 401
        bad = c.post("/events/view", json=view(1005, 7000, 1), headers={"X-API-Key": "nope"})
        assert bad.status_code == 401
        ok = c.post("/events/view", json=view(1005, 7000, 1), headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert score(c, 101)["history_length"] == 1


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        (
            "/score",
            {"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": MAX_MS + 1}]},
            ["body", "candidates", 0, "duration_ms"],
        ),
        (
            "/score",
            {"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 9}] * 4},
            ["body", "candidates"],
        ),
        ("/score", {"user_id": 1, "candidates": []}, ["body", "candidates"]),
        (
            "/score",
            {"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 9}], "extra": 1},
            ["body", "extra"],
        ),
        (
            "/score",
            {"user_id": -1, "candidates": [{"video_id": 1, "duration_ms": 9}]},
            ["body", "user_id"],
        ),
        (
            "/score",
            {"user_id": 2**63, "candidates": [{"video_id": 1, "duration_ms": 9}]},
            ["body", "user_id"],
        ),
        ("/score", {"candidates": [{"video_id": 1, "duration_ms": 9}]}, ["body", "user_id"]),
        ("/thumbnail", {"user_id": 1, "video_id": 1, "duration_ms": 9000, "k": 6}, ["body", "k"]),
        (
            "/thumbnail",
            {"user_id": 1, "video_id": 1, "duration_ms": 9000, "min_gap_segments": 0},
            ["body", "min_gap_segments"],
        ),
        (
            "/events/view",
            {"user_id": 1, "video_id": 1, "duration_ms": 9000, "play_time_ms": 1},
            ["body", "time_ms"],
        ),
    ],
)
def test_bad_requests_get_422_naming_the_field(
    make_settings: Callable[..., Settings],
    path: str,
    body: dict,
    loc: list,  # type: ignore[type-arg]
) -> None:
    """Limits from settings and the artifact, unknown fields and bad values: 422 with loc."""
    with TestClient(create_app(make_settings(max_candidates=3, max_k=5))) as c:
        r = c.post(path, json=body)
    assert r.status_code == 422
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_a_body_over_the_limit_gets_422_before_parsing(
    make_settings: Callable[..., Settings],
) -> None:
    """Both a declared Content-Length and a chunked body over max_body_bytes are refused,
    and the metrics middleware (a separate one) counts those 422s like any other answer."""
    big = {"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 9}] * 200}
    counted = {"route": "unmatched", "method": "POST", "status": "422"}
    before = sample("segint_http_requests_total", **counted)
    with TestClient(create_app(make_settings(max_body_bytes=1024))) as c:
        r = c.post("/score", json=big)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
        assert sample("segint_http_requests_total", **counted) == before + 1
        chunked = c.post(
            "/score", content=iter([b'{"user_id": 1, "candidates": [', b" " * 2000, b"]}"])
        )
        assert chunked.status_code == 422 and "max_body_bytes" in chunked.json()["detail"][0]["msg"]
        assert (
            c.post(
                "/score", json={"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 9}]}
            ).status_code
            == 200
        )


def test_thumbnail_returns_top_k_segments_with_the_gap(client: TestClient) -> None:
    """Best first, at least min_gap apart, bounds in ms; never more than N segments."""
    body = {"user_id": 101, "video_id": 1003, "duration_ms": 33000, "k": 3, "min_gap_segments": 2}
    out = client.post("/thumbnail", json=body).json()
    segs = out["segments"]
    assert out["n_segments"] == 7 and 1 <= len(segs) <= 3
    scores = [s["score"] for s in segs]
    assert scores == sorted(scores, reverse=True)
    idx = [s["index"] for s in segs]
    assert all(abs(a - b) >= 2 for i, a in enumerate(idx) for b in idx[i + 1 :])
    for s in segs:
        assert s["start_ms"] == 5000 * s["index"] and s["end_ms"] == min(
            s["start_ms"] + 5000, 33000
        )
    # The scores are the /score segment scores of the same video.
    full = client.post(
        "/score",
        json={
            "user_id": 101,
            "candidates": [{"video_id": 1003, "duration_ms": 33000}],
            "include": ["segment_scores"],
        },
    )
    seg_scores = full.json()["candidates"][0]["segment_scores"]
    # /score writes float32 values in their shortest form, /thumbnail the float64 of one.
    assert np.float32(segs[0]["score"]) == np.float32(max(seg_scores))
    short = client.post(
        "/thumbnail", json=body | {"duration_ms": 8000, "k": 5, "min_gap_segments": 1}
    )
    assert len(short.json()["segments"]) == 2  # a 2-segment video has 2 segments to offer


def test_health_readiness_and_metrics(client: TestClient) -> None:
    """/healthz names the provider actually used; /metrics exposes the service's series."""
    health = client.get("/healthz").json()
    assert health["provider"] == "CPUExecutionProvider" and health["cache"] == "local"
    assert client.get("/readyz").json() == {
        "ready": True,
        "model_loaded": True,
        "cache": "local",
        "redis_reachable": None,
        "degraded": False,
    }
    score(client, 101)
    text = client.get("/metrics").text
    assert (
        'segint_model_info{model_version="tiny-self",opset="20",provider="CPUExecutionProvider",user_stream="self"} 1.0'
        in text
    )
    for series in (
        'segint_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/score"}',
        'segint_inference_duration_seconds_count{graph="scorer"}',
        'segint_batch_size_sum{graph="scorer"}',
        'segint_cache_requests_total{result="miss"}',
    ):
        assert series in text


def test_openapi_documents_the_limits_and_examples(make_settings: Callable[..., Settings]) -> None:
    """The schema carries the deployment's limits, so clients and fuzzers see them."""
    app = create_app(make_settings(max_candidates=50, max_k=4))
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["ScoreRequest"]["properties"]["candidates"]["maxItems"] == 50
    assert schemas["Candidate"]["properties"]["duration_ms"]["maximum"] == MAX_MS
    assert schemas["ThumbnailRequest"]["properties"]["k"]["maximum"] == 4
    assert schemas["ScoreRequest"]["additionalProperties"] is False
    assert schemas["ScoreRequest"]["examples"]
    assert set(spec["paths"]) == {
        "/score",
        "/thumbnail",
        "/events/view",
        "/healthz",
        "/readyz",
        "/metrics",
    }


@pytest.mark.slow
def test_cross_stream_artifact_scores_like_pytorch(
    make_settings: Callable[..., Settings], cross_artifact: object
) -> None:
    """Cross stream: the service repeats the user per candidate; history-only blobs cached."""
    with TestClient(create_app(make_settings(artifact_dir=cross_artifact))) as c:
        assert (
            c.post("/events/view", json=view(1009, 4000, 10, user_id=107)).json()["applied"] is True
        )
        out = score(c, 107)
        assert out["history_source"] == "cache" and out["history_length"] == 1
    want = torch_logits("cross", 107, [(1009, 12000, 4000)], CANDIDATES)
    for row, cand in enumerate(out["candidates"]):
        np.testing.assert_allclose(
            cand["segment_scores"], want[row, : cand["n_segments"]], atol=ATOL, rtol=RTOL
        )


def test_unusable_cached_blobs_are_recomputed_and_replaced(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    """A corrupt blob is a miss; a stale one (another export) keeps its history; both are
    replaced, so the next request is a cache hit. Counted in segint_fallback_total."""
    prefix = redis_prefix
    client = redis.Redis.from_url(redis_url)
    stale = encode_blob(
        UserState(History.from_views([1005], [12000], [7000], [5], cap=5), None, None), b"\x00" * 8
    )
    client.set(f"{prefix}:vtiny-self:user:{{301}}", b"garbage")
    client.set(f"{prefix}:vtiny-self:user:{{302}}", stale)
    corrupt0, stale0 = (
        sample("segint_fallback_total", reason="corrupt_blob"),
        sample("segint_fallback_total", reason="stale_blob"),
    )
    try:
        with TestClient(create_app(make_settings(redis_url=redis_url, key_prefix=prefix))) as c:
            first = score(c, 301), score(c, 302)
            assert [(o["history_source"], o["history_length"]) for o in first] == [
                ("empty", 0),
                ("cache", 1),
            ]
            again = score(c, 301), score(c, 302)
            assert [o["history_source"] for o in again] == ["cache", "cache"]
            assert again[1]["candidates"] == first[1]["candidates"]
        assert sample("segint_fallback_total", reason="corrupt_blob") == corrupt0 + 1
        assert sample("segint_fallback_total", reason="stale_blob") == stale0 + 1
    finally:
        client.close()


def test_server_timing_splits_the_handler(client: TestClient) -> None:
    """`Server-Timing` of /score and /thumbnail names every stage, each one within the
    handler's time (the bench subtracts them from it)."""
    body = {
        "user_id": 104,
        "candidates": [{"video_id": v, "duration_ms": d} for v, d in CANDIDATES],
    }
    thumb = {"user_id": 104, "video_id": CANDIDATES[0][0], "duration_ms": CANDIDATES[0][1]}
    for path, json_body in (("/score", body), ("/score", body), ("/thumbnail", thumb)):
        r = client.post(path, json=json_body)
        assert r.status_code == 200, r.text
        parts = dict(p.strip().split(";dur=") for p in r.headers["Server-Timing"].split(","))
        t = {k: float(v) for k, v in parts.items()}
        assert set(t) == {"cache", "queue", "handoff", "ort", "handler"}
        assert min(t.values()) >= 0 and t["ort"] > 0 and t["handoff"] > 0
        assert t["cache"] + t["queue"] + t["handoff"] + t["ort"] <= t["handler"]
