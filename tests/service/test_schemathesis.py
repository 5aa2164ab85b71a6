"""Property-based API testing of the live server against its own OpenAPI schema.

Schemathesis (its CLI: the pytest plugin's lazy loader does not run on pytest 9) generates
requests for every operation from the schema's types, bounds and examples, valid and invalid,
and runs all its checks (``--checks all``): no 5xx, every response and status code documented,
schema-valid requests accepted, invalid ones rejected, authentication enforced where declared.
Fixed seed, bounded examples: the same cases on every run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.live import uvicorn_server

KEY = "fuzz-key"


@pytest.fixture(params=["id-no-key", "id-key", "ctr-key", "content-key"])
def deployment(
    request: pytest.FixtureRequest,
    self_artifact: Path,
    ctr_artifact: Path,
    content_self_artifact: Path,
    feature_store: Path,
) -> dict[str, str]:
    """Environment of an ID model without and with an API key, one with a CTR head, and a
    content model with its store."""
    key = {} if request.param.endswith("no-key") else {"SEGINT_API_KEY": KEY}
    if request.param.startswith("id"):
        return {"SEGINT_ARTIFACT_DIR": str(self_artifact)} | key
    if request.param.startswith("ctr"):
        return {"SEGINT_ARTIFACT_DIR": str(ctr_artifact)} | key
    return {
        "SEGINT_ARTIFACT_DIR": str(content_self_artifact),
        "SEGINT_FEATURE_STORE": str(feature_store),
    } | key


@pytest.mark.slow
def test_api_conforms_to_its_schema(deployment: dict[str, str], tmp_path: Path) -> None:
    """A few hundred generated cases over all six operations pass every schemathesis check."""
    env = deployment
    auth = ["-H", f"X-API-Key: {KEY}"] if "SEGINT_API_KEY" in env else []
    with uvicorn_server(env, tmp_path) as server:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--workers",
                "1",
                "--seed",
                "0",
                "--no-color",
                *auth,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "Tested: 6" in report, report
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report
    assert int(generated[1]) >= 200 and generated[1] == generated[2], report
    assert "No issues found" in report, report
    print(f"schemathesis --checks all, {sorted(env)}: {generated[0]}")
    assert "Traceback" not in server.log_text(), server.log_text()


@pytest.mark.parametrize("key", [None, KEY])
def test_the_api_key_scheme_is_declared_only_when_a_key_is_configured(
    make_settings: Callable[..., Settings], key: str | None
) -> None:
    """No key: no security scheme, no 401 documented, and no header needed. A key: the
    scheme guards /events/view, and a request without it gets the documented 401."""
    with TestClient(create_app(make_settings(api_key=key))) as client:
        spec = client.get("/openapi.json").json()
        view = spec["paths"]["/events/view"]["post"]
        body = {"user_id": 1, "video_id": 2, "duration_ms": 9000, "play_time_ms": 1, "time_ms": 3}
        answer = client.post("/events/view", json=body)
    if key is None:
        assert "security" not in view and "securitySchemes" not in spec.get("components", {})
        assert "401" not in view["responses"] and answer.status_code == 200
    else:
        assert view["security"] == [{"APIKeyHeader": []}]
        assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        assert "401" in view["responses"] and answer.status_code == 401
