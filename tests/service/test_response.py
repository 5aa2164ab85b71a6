"""The /score response diet: default fields only, arrays on request, float32 values, the schema."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.schemas import ScoreResponse
from service.settings import Settings
from tests.service.reference import score_body

S = 7
CANDIDATES = [(1001, 12000), (1002, 5000), (999, 34999), (1003, 4000), (1004, 30000)]
DEFAULT_FIELDS = {
    "video_id",
    "video_unknown",
    "n_segments",
    "predicted_exit_slot",
    "skip_probability",
    "expected_watch_ms",
    "median_watch_ms",
    "completion_probability",
}  # + "ctr" with a CTR head (tests/service/test_ctr.py)
FLOATS = ("skip_probability", "completion_probability")


def post(client: TestClient, include: list[str] | None) -> dict:  # type: ignore[type-arg]
    r = client.post("/score", json=score_body(101, CANDIDATES, include=include))
    assert r.status_code == 200, r.text
    ScoreResponse.model_validate_json(r.content)  # the declared schema holds
    return r.json()  # type: ignore[no-any-return]


def test_default_candidates_carry_the_default_fields_only(client: TestClient) -> None:
    """No arrays unless asked, no ctr without a CTR head; skip = 1 - completion; watch times
    in whole ms; the user flag once per response."""
    out = post(client, None)
    assert out["user_unknown"] is False  # user 101 is in the tiny model's vocabulary
    for c in out["candidates"]:
        assert set(c) == DEFAULT_FIELDS
        assert c["skip_probability"] == pytest.approx(1 - c["completion_probability"], abs=1e-6)
        assert 0 <= c["predicted_exit_slot"] <= c["n_segments"]
        assert type(c["expected_watch_ms"]) is int and type(c["median_watch_ms"]) is int
    assert [c["video_id"] for c in out["candidates"]] == [v for v, _ in CANDIDATES]


@pytest.mark.parametrize(
    "include",
    [["segment_scores"], ["exit_distribution"], ["segment_scores", "exit_distribution"]],
)
def test_arrays_come_only_when_included(client: TestClient, include: list[str]) -> None:
    """Each listed array is added with its length (N scores, N + 1 outcomes; N when N = S);
    the default fields keep their values."""
    full, default = post(client, include), post(client, None)
    for c, d in zip(full["candidates"], default["candidates"], strict=True):
        assert set(c) == DEFAULT_FIELDS | set(include)
        assert {k: c[k] for k in DEFAULT_FIELDS} == d
        n = c["n_segments"]
        if "segment_scores" in include:
            assert len(c["segment_scores"]) == n
        if "exit_distribution" in include:
            dist = c["exit_distribution"]
            assert len(dist) == (n + 1 if n < S else n)
            assert abs(sum(dist) - 1) < 1e-6
            assert c["completion_probability"] == (dist[n] if n < S else 0.0)


def test_floats_are_float32_in_shortest_form(client: TestClient) -> None:
    """Every float is written as the shortest text of a float32 value (~8 digits, not 17)."""
    out = post(client, ["segment_scores", "exit_distribution"])
    values = [
        v
        for c in out["candidates"]
        for v in [*(c[k] for k in FLOATS), *c["segment_scores"], *c["exit_distribution"]]
    ]
    assert values
    for v in values:
        assert repr(v) == repr(float(str(np.float32(v)))), v


def test_default_response_is_small(client: TestClient) -> None:
    """1,000 candidates: the default body stays under 200 bytes per candidate (field names
    included; 500 candidates under 100 KB); both arrays add their keys and >= 3 numbers per
    candidate on top."""
    rng = np.random.default_rng(0)
    ids, durations = rng.integers(1000, 1028, 1000), rng.integers(1, 5 * S * 1000, 1000)
    many = [(int(v), int(d)) for v, d in zip(ids, durations, strict=True)]
    default = client.post("/score", json=score_body(101, many, include=None))
    full = client.post("/score", json=score_body(101, many))
    assert default.status_code == full.status_code == 200
    assert len(json.loads(default.content)["candidates"]) == 1000
    assert len(default.content) < 200 * 1000
    assert len(full.content) - len(default.content) > 1000 * (
        len(',"segment_scores":[],"exit_distribution":[]') + 3 * 5
    )


@pytest.mark.parametrize(
    "include", [["thumbnails"], "segment_scores", ["segment_scores"] * 3, [None]]
)
def test_bad_include_is_a_422_naming_the_field(client: TestClient, include: object) -> None:
    """Unknown array names, a bare string, too many entries: 422 with ``include`` in loc."""
    body = score_body(101, CANDIDATES, include=None) | {"include": include}
    r = client.post("/score", json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "include"]


def test_default_fields_are_the_models_fields_less_the_optional_ones() -> None:
    """`CandidateScore.json_array` writes every field of the model except the opt-in arrays
    and the CTR-head-only ``ctr``: the route has no mapping of its own to drift."""
    from service.schemas import CandidateScore

    optional = {"segment_scores", "exit_distribution", "ctr"}
    assert set(CandidateScore.model_fields) - optional == DEFAULT_FIELDS


def test_openapi_documents_the_diet(make_settings: Callable[..., Settings]) -> None:
    """The schema lists `include` with its two values and the arrays as optional fields."""
    with TestClient(create_app(make_settings())) as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]
    include = schema["ScoreRequest"]["properties"]["include"]
    assert include["items"]["enum"] == ["segment_scores", "exit_distribution"]
    cand = schema["CandidateScore"]
    assert {"segment_scores", "exit_distribution"}.isdisjoint(cand["required"])
    assert {"skip_probability", "predicted_exit_slot", "expected_watch_ms"} <= set(cand["required"])


@pytest.mark.parametrize("writer", ["python", "compiled"])
@pytest.mark.parametrize("ctr", [False, True])
@pytest.mark.parametrize("include", [[], ["segment_scores", "exit_distribution"]])
def test_json_array_writes_what_orjson_writes_of_one_dict_per_candidate(
    ctr: bool, include: list[str], writer: str
) -> None:
    """The column-wise writer, and the compiled one of the kernels' library (default fields
    only; with arrays the column-wise one writes), give the same bytes as one dict per
    candidate given to orjson (the float32 values, bools, whole ms, N-long and N+1-long arrays;
    N = S has no completion slot), for odd values: 1e-8, 0.1, 1.0, 3e-6 (orjson's decimal
    form), 2e-7 (its exponent form), ids up to 2**53 - 1, watch times ending in .5."""
    import orjson

    from service.ranker import Scores
    from service.schemas import JSON_INT_MAX, CandidateScore

    rng = np.random.default_rng(3)
    c = 9
    nseg = np.array([1, S, 3, 2, S - 1, 4, 1, 5, 6])
    dist = rng.random((c, S))
    dist[np.arange(S)[None, :] > nseg[:, None]] = 0.0
    dist /= dist.sum(axis=1, keepdims=True)
    comp = np.array([dist[i, n] if n < S else 0.0 for i, n in enumerate(nseg)])
    comp[:5] = [1e-8, 0.1, 1.0, 3e-6, 2e-7]
    s = Scores(
        logits=rng.normal(size=(c, S)).astype(np.float32),
        n_segments=nseg,
        exit_distribution=dist,
        predicted_exit_slot=rng.integers(0, S, c),
        expected_watch_ms=rng.random(c) * 1e5,
        completion_probability=comp,
        median_watch_ms=np.floor(rng.random(c) * 1e5) + 0.5,  # half to even, both ways
        video_unknown=rng.random(c) < 0.5,
        user_unknown=False,
        ctr=rng.random(c) if ctr else None,
    )
    ids = [0, 1, JSON_INT_MAX, *range(7, 13)]
    compiled = None
    if writer == "compiled":
        from service import kernels
        from service.kernels.heads import CompiledHeads

        lib = kernels.library()
        assert lib is not None, f"{kernels.LIBRARY} is not built: run `make kernels`"
        compiled = CompiledHeads(lib)
    got = CandidateScore.json_array(ids, s, frozenset(include), compiled)
    f32 = np.float32
    want = []
    for i in range(c):
        row = {
            "video_id": ids[i],
            "video_unknown": bool(s.video_unknown[i]),
            "n_segments": int(nseg[i]),
            "predicted_exit_slot": int(s.predicted_exit_slot[i]),
            "skip_probability": f32(1.0 - comp[i]),
            "expected_watch_ms": int(np.rint(s.expected_watch_ms[i])),
            "median_watch_ms": int(np.rint(s.median_watch_ms[i])),
            "completion_probability": f32(comp[i]),
        }
        if ctr:
            assert s.ctr is not None
            row["ctr"] = f32(s.ctr[i])
        if include:
            row["segment_scores"] = s.logits[i, : nseg[i]]
            row["exit_distribution"] = dist[i, : min(nseg[i] + 1, S)].astype(f32)
        want.append(row)
    assert got == orjson.dumps(want, option=orjson.OPT_SERIALIZE_NUMPY)
