"""The per-video exit table's mixture (`segint.video_table`), by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segint.errors import SegintError
from segint.video_table import TABLE_FILE, VideoTable, read_run_table


def _table(weight: float = 0.25) -> VideoTable:
    # 4 vocabulary rows, S = 3: row 0 unknown, row 1 N = 2, row 2 N = 3 (all S slots), row 3
    # no row (a vocabulary video the fitting rows did not hold).
    dist = np.array(
        [[0, 0, 0], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25], [0, 0, 0]],
        dtype=np.float64,
    )
    return VideoTable(dist, np.array([0, 2, 3, 0]), weight, {"fitted_on": "test"})


def test_mix_by_hand() -> None:
    """A candidate takes the table when its video has a row with its N: (1 - w) p + w t; an
    unknown video, another N, a video without a row or past the table keep the network's."""
    t = _table(0.25)
    net = np.array(
        [
            [0.4, 0.4, 0.2],  # video row 1, N = 2: mixed
            [0.1, 0.3, 0.6],  # video row 2, N = 3: mixed
            [0.4, 0.4, 0.2],  # video row 1 but N = 1: kept
            [0.3, 0.7, 0.0],  # unknown video (row 0): kept
            [0.3, 0.7, 0.0],  # row 3 has no table row: kept
            [0.3, 0.7, 0.0],  # row 9: outside the table (a newer vocabulary): kept
        ]
    )
    idx = np.array([1, 2, 1, 0, 3, 9])
    n = np.array([2, 3, 1, 1, 1, 1])
    dist = net.copy()
    used = t.mix(dist, idx, n)
    assert used.tolist() == [True, True, False, False, False, False]
    np.testing.assert_allclose(dist[0], [0.75 * 0.4 + 0.05, 0.75 * 0.4 + 0.05, 0.15 + 0.15])
    np.testing.assert_allclose(dist[1], [0.075 + 0.125, 0.225 + 0.0625, 0.45 + 0.0625])
    np.testing.assert_array_equal(dist[2:], net[2:])
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)


def test_write_read_round_trip(tmp_path: Path) -> None:
    """RUN/video_trees.npz keeps the distribution (as float32), N, the weight and the notes;
    a run without one has no table."""
    assert read_run_table(tmp_path) is None
    t = _table(0.5)
    assert t.write(tmp_path).name == TABLE_FILE
    back = read_run_table(tmp_path)
    assert back is not None
    np.testing.assert_array_equal(back.dist, t.dist.astype(np.float32))
    assert back.n_segments.tolist() == [0, 2, 3, 0]
    assert back.weight == 0.5 and back.meta == {"fitted_on": "test"}


@pytest.mark.parametrize("weight", [0.0, -0.1, 1.5, float("nan")])
def test_weight_outside_0_1_is_refused(weight: float) -> None:
    with pytest.raises(SegintError, match="weight"):
        _table(weight)


def test_shape_checks(tmp_path: Path) -> None:
    """A table of another vocabulary size or slot count than its model's is refused, and so
    is an unreadable file, with the file named."""
    t = _table()
    t.check(4, 3, "run")
    with pytest.raises(SegintError, match="vocabulary videos"):
        t.check(5, 3, "run")
    with pytest.raises(SegintError, match="3 slots|40 slots"):
        t.check(4, 40, "run")
    with pytest.raises(SegintError, match="do not match"):
        VideoTable(np.zeros((3, 2)), np.zeros(4, np.int64), 0.5)
    bad = tmp_path / TABLE_FILE
    bad.write_bytes(b"not a zip")
    with pytest.raises(SegintError, match=str(bad)):
        read_run_table(tmp_path)
