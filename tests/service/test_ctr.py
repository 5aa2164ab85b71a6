"""The SegRec CTR in POST /score: equal to PyTorch (SegRec head on the interest model's
logits), one head run per request, null without a CTR head; documented in the schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.app import create_app
from service.settings import Settings
from tests.service.reference import CTR_ATOL, history_items, score_body, torch_ctr

# Known to both vocabularies, to one only (1001, 1030), to none (4242); 1, 7 and 5 segments.
CANDIDATES = [(1001, 4000), (1007, 34999), (1030, 30000), (4242, 22000), (1003, 9000)]
HISTORY = [  # newest first; 7 views: the interest model reads 5, the CTR head 6
    (1012, 25000, 11000),
    (1033, 10000, 10000),
    (1005, 20000, 3000),
    (1004, 5000, 100),
    (1006, 30000, 30000),
    (1020, 30000, 7000),
    (1021, 15000, 7000),
]


def body(user_id: int, history: bool = True) -> dict[str, object]:
    return score_body(user_id, CANDIDATES, history_items(HISTORY, 1000) if history else None)


@pytest.fixture
def ctr_client(make_settings: Callable[..., Settings], ctr_artifact: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(artifact_dir=ctr_artifact))) as c:
        yield c


def ctr_runs() -> tuple[float, float]:
    """(session runs, rows) of the ctr graph so far in this process."""
    count = REGISTRY.get_sample_value("segint_batch_size_count", {"graph": "ctr"}) or 0.0
    rows = REGISTRY.get_sample_value("segint_batch_size_sum", {"graph": "ctr"}) or 0.0
    return count, rows


@pytest.mark.parametrize(
    "user_id", [110, 113, 100]
)  # in both vocabularies, CTR's only, interest's only
def test_ctr_matches_pytorch(ctr_client: TestClient, user_id: int) -> None:
    """ctr per candidate == sigmoid(sum_j softmax(p)_j y_j) of the PyTorch models for the same
    raw ids, with a history longer than the interest model reads, in one run of the head."""
    runs, rows = ctr_runs()
    r = ctr_client.post("/score", json=body(user_id))
    assert r.status_code == 200, r.text
    got = np.array([c["ctr"] for c in r.json()["candidates"]])
    assert ((got > 0) & (got < 1)).all()
    np.testing.assert_allclose(got, torch_ctr(user_id, HISTORY, CANDIDATES), atol=CTR_ATOL, rtol=0)
    assert ctr_runs() == (runs + 1, rows + len(CANDIDATES))


def test_ctr_follows_view_events(ctr_client: TestClient) -> None:
    """Views posted as events (7, beyond the interest model's 5) are the head's history."""
    for i, (v, d, p) in enumerate(reversed(HISTORY)):
        event = {"user_id": 111, "video_id": v, "duration_ms": d, "play_time_ms": p, "time_ms": i}
        assert ctr_client.post("/events/view", json=event).status_code == 200
    out = ctr_client.post("/score", json=body(111, history=False)).json()
    assert out["history_source"] == "cache" and out["history_length"] == 6
    got = np.array([c["ctr"] for c in out["candidates"]])
    np.testing.assert_allclose(got, torch_ctr(111, HISTORY, CANDIDATES), atol=CTR_ATOL, rtol=0)
    empty = ctr_client.post("/score", json=body(105, history=False)).json()
    got = np.array([c["ctr"] for c in empty["candidates"]])
    np.testing.assert_allclose(got, torch_ctr(105, [], CANDIDATES), atol=CTR_ATOL, rtol=0)


def test_thumbnail_does_not_run_the_ctr_head(ctr_client: TestClient) -> None:
    """Only /score needs the CTR."""
    runs = ctr_runs()
    r = ctr_client.post("/thumbnail", json={"user_id": 110, "video_id": 1001, "duration_ms": 9000})
    assert r.status_code == 200 and ctr_runs() == runs


def test_no_ctr_head_means_no_ctr(client: TestClient, ctr_client: TestClient) -> None:
    """Without a CTR head the field is absent (never a made-up value); /healthz names the
    head; the OpenAPI schema documents ctr as an optional number."""
    out = client.post("/score", json=body(110)).json()
    assert all("ctr" not in c for c in out["candidates"])
    assert client.get("/healthz").json()["ctr_head"] is None
    assert ctr_client.get("/healthz").json()["ctr_head"] == "din/segrec"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CandidateScore"]
    ctr = schema["properties"]["ctr"]
    assert {"type": "number"} in ctr["anyOf"] and {"type": "null"} in ctr["anyOf"]
    assert "Absent when" in ctr["description"] and "ctr" not in schema.get("required", [])
