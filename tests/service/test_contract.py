"""Strict request validation: the bounds and types the schema states are what the code takes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.schemas import JSON_INT_MAX


def _thumbnail(**fields: Any) -> dict[str, Any]:
    return {"user_id": 1, "video_id": 2, "duration_ms": 9000} | fields


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (_thumbnail(video_id=False), ["body", "video_id"]),
        (_thumbnail(user_id=True), ["body", "user_id"]),
        (_thumbnail(video_id="5"), ["body", "video_id"]),
        (_thumbnail(k=2.5), ["body", "k"]),
        (_thumbnail(video_id=JSON_INT_MAX + 1), ["body", "video_id"]),
        (_thumbnail(duration_ms=float("1e300")), ["body", "duration_ms"]),
    ],
)
def test_booleans_strings_fractions_and_unsafe_integers_are_not_ids(
    client: TestClient, body: dict[str, Any], loc: list[str]
) -> None:
    """`false`, `"5"`, 2.5 and ids past 2**53 - 1 are 422s naming the field."""
    r = client.post("/thumbnail", json=body)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_the_largest_id_the_schema_allows_and_integral_numbers_are_accepted(
    client: TestClient,
) -> None:
    """The schema's maximum is accepted as it is, and 9000.0 is the integer 9000 (JSON
    Schema's `integer`)."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ThumbnailRequest"]
    assert schema["properties"]["video_id"]["maximum"] == JSON_INT_MAX
    r = client.post("/thumbnail", json=_thumbnail(video_id=JSON_INT_MAX, duration_ms=9000.0))
    assert r.status_code == 200, r.text
    assert r.json()["video_id"] == JSON_INT_MAX and r.json()["video_unknown"] is True


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body(client: TestClient) -> None:
    """Undecodable bytes get the same 422 as any bad body, not FastAPI's bare 400."""
    r = client.post("/thumbnail", content=b"\x12\xff", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


def test_schema_examples_fit_the_deployed_limits(client: TestClient) -> None:
    """Every example in the schema is a request this deployment accepts (the tiny model's
    longest video is shorter than the examples' 61 s)."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name, path in [("ScoreRequest", "/score"), ("ThumbnailRequest", "/thumbnail")]:
        for example in schemas[name]["examples"]:
            r = client.post(path, json=example)
            assert r.status_code == 200, (name, example, r.text)
