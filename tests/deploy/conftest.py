"""Deploy fixtures: the tiny exported artifact (shared with the export tests) and free ports."""

from __future__ import annotations

from tests.export.conftest import artifact_cache, self_artifact

__all__ = ["artifact_cache", "self_artifact"]
