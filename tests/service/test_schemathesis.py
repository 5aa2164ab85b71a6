"""Property-based API testing of the live server against its own OpenAPI schema.

Schemathesis (its CLI: the pytest plugin's lazy loader does not run on pytest 9) generates
requests for every operation from the schema's types, bounds and examples, valid and invalid,
and checks that none gets a 5xx and that every response matches the documented schema.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.live import uvicorn_server


@pytest.fixture(params=["id", "ctr", "content"])
def deployment(
    request: pytest.FixtureRequest,
    self_artifact: Path,
    ctr_artifact: Path,
    content_self_artifact: Path,
    feature_store: Path,
) -> dict[str, str]:
    """Environment of an ID model, one with a CTR head, and a content model with its store."""
    if request.param == "id":
        return {"SEGINT_ARTIFACT_DIR": str(self_artifact)}
    if request.param == "ctr":
        return {"SEGINT_ARTIFACT_DIR": str(ctr_artifact)}
    return {
        "SEGINT_ARTIFACT_DIR": str(content_self_artifact),
        "SEGINT_FEATURE_STORE": str(feature_store),
    }


@pytest.mark.slow
def test_api_conforms_to_its_schema(deployment: dict[str, str], tmp_path: Path) -> None:
    """A few hundred generated cases over all six operations: no 5xx, no schema violation."""
    env = {**deployment, "SEGINT_API_KEY": "fuzz-key"}
    with uvicorn_server(env, tmp_path) as server:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "50",
                "--workers",
                "1",
                "--seed",
                "0",
                "--no-color",
                "-H",
                "X-API-Key: fuzz-key",
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
    assert "Traceback" not in server.log_text(), server.log_text()
