"""Fixtures: tiny exported artifacts (cached across runs) and the PyTorch models behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.tiny import cached_artifact


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
