"""Shared fixtures: paths to the real data beside the project (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import KUAIRAND_LOG, SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; a missing folder is an error, never a silent skip."""
    if not KUAIRAND_LOG.exists():
        raise FileNotFoundError(f"shared data not found at {SHARED_DATA} (set SEGINT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis for tests: `make test` exports SEGINT_TEST_REDIS_URL (DB 15 of a real server)."""
    return os.environ.get("SEGINT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
