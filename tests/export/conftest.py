"""Fixtures: tiny exported artifacts (cached across runs) and the PyTorch models behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.tiny import cached_artifact
from tests.export.tiny_content import cached_content_artifact, cached_store
from tests.export.tiny_ctr import cached_ctr_artifact


@pytest.fixture(scope="session")
def artifact_cache(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.cache.mkdir("segint-tiny-artifacts"))


@pytest.fixture(scope="session")
def self_artifact(artifact_cache: Path) -> Path:
    """Artifact of `tiny_model("self")`: user_encoder.onnx + scorer.onnx."""
    return cached_artifact(artifact_cache, "self")


@pytest.fixture(scope="session")
def cross_artifact(artifact_cache: Path) -> Path:
    """Artifact of `tiny_model("cross")`: model.onnx."""
    return cached_artifact(artifact_cache, "cross")


@pytest.fixture(scope="session")
def ctr_artifact_and_run(artifact_cache: Path) -> tuple[Path, Path]:
    """(artifact, SegRec run): `tiny_model("self")` with the DIN CTR head of `tiny_segrec`."""
    return cached_ctr_artifact(artifact_cache)


@pytest.fixture(scope="session")
def ctr_artifact(ctr_artifact_and_run: tuple[Path, Path]) -> Path:
    return ctr_artifact_and_run[0]


@pytest.fixture(scope="session")
def feature_store(artifact_cache: Path) -> Path:
    """Segment feature store of `store_features(0)`."""
    return cached_store(artifact_cache, 0)


@pytest.fixture(scope="session")
def content_self_artifact(artifact_cache: Path) -> Path:
    """Artifact of the id + content, self-stream tiny model."""
    return cached_content_artifact(artifact_cache, "content-self")


@pytest.fixture(scope="session")
def content_cross_artifact(artifact_cache: Path) -> Path:
    """Artifact of the content-only, cross-stream tiny model."""
    return cached_content_artifact(artifact_cache, "content-cross")
