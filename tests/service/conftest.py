"""Service fixtures: the tiny exported artifact, settings for it, and a TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.export.conftest import (
    artifact_cache,
    content_cross_artifact,
    content_self_artifact,
    cross_artifact,
    ctr_artifact,
    ctr_artifact_and_run,
    feature_store,
    self_artifact,
)
from tests.service.live import redis_key_prefix

__all__ = [  # fixtures shared with export
    "artifact_cache",
    "content_cross_artifact",
    "content_self_artifact",
    "ctr_artifact",
    "ctr_artifact_and_run",
    "cross_artifact",
    "feature_store",
    "self_artifact",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(self_artifact: Path) -> Callable[..., Settings]:
    """Settings for the tiny artifact: one ORT thread, no gc tuning (tests share a process),
    the scorer in fp32 (the parity tests compare fp32 answers; int8 tests say so)."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "artifact_dir": self_artifact,
            "intra_op_threads": 1,
            "scorer_precision": "fp32",
            "gc_freeze": False,
            "redis_url": None,
            "api_key": None,
        }
        return Settings(**(base | overrides))

    return make


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix on the test Redis, its keys removed after the test."""
    with redis_key_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The app with the in-process cache (no Redis), lifespan running."""
    with TestClient(create_app(make_settings())) as c:
        yield c
