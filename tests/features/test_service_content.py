"""The service's optional content hook (service/content.py) on a real store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segint.errors import SegintError
from segint.features import FeatureWriter
from service.content import ContentFeatures

CONFIG = {"content_dim": 4, "s_max": 3}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with FeatureWriter(tmp_path / "st", 4) as w:
        w.add(11, np.arange(8, dtype=np.float32).reshape(2, 4))
        w.add(12, np.ones((3, 4)))
    return tmp_path / "st"


def test_feeds_have_model_shapes(store: Path) -> None:
    """video_content is (C, S, Dc), hist_content (B, H, Dc); unknown videos are zeros, counted."""
    cf = ContentFeatures.open(store, CONFIG)
    v = cf.video_content([12, 99, 11], [3, 2, 2])
    assert v.shape == (3, 3, 4) and v.dtype == np.float32
    assert v[0].sum() == 12 and not v[1].any() and v[2, 1].tolist() == [4, 5, 6, 7]
    h = cf.hist_content([[11, 99, 0]], [[2, 0, 0]], [[2, 1, 1]], [[True, True, False]])
    assert h.shape == (1, 3, 4)
    np.testing.assert_allclose(h[0, 0], [2, 3, 4, 5])  # complete view: both segments
    assert not h[0, 1:].any()
    assert cf.missing_videos == 2  # 99 as a candidate and in the history; padding not counted


def test_env_and_dim_check(store: Path, monkeypatch) -> None:
    """SEGINT_FEATURE_STORE unset -> None; a width mismatch is a clear error."""
    monkeypatch.delenv("SEGINT_FEATURE_STORE", raising=False)
    assert ContentFeatures.from_env(CONFIG) is None
    monkeypatch.setenv("SEGINT_FEATURE_STORE", str(store))
    monkeypatch.setenv("SEGINT_FEATURE_L1", "1")
    cf = ContentFeatures.from_env(CONFIG)
    assert cf is not None and cf.store.l1_normalize
    with pytest.raises(SegintError, match="dim 4, the model wants 8"):
        ContentFeatures.open(store, {"content_dim": 8, "s_max": 3})


def test_hook_does_not_import_torch() -> None:
    """The service never imports torch; the hook keeps it that way."""
    code = "import sys, service.content; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
