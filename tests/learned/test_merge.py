"""learned.merge: joins predictions of the same rows, refuses different rows or methods."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from learned.merge import main, merge_predictions
from segint.errors import SegintError
from segint.predictions import predictions_frame, write_predictions


def _frames():
    rng = np.random.default_rng(0)
    n, s = 6, 4
    test = pl.DataFrame(
        {
            "user_id": np.arange(n), "video_id": np.arange(n) % 2, "time_ms": np.arange(n),
            "duration_ms": [12000] * n, "play_time_ms": [3000, 12000, 8000, 1000, 12000, 6000],
            "n_segments": [3] * n, "exit_slot": [0, 3, 1, 0, 3, 1],
        }
    )  # fmt: skip
    d = rng.dirichlet(np.ones(s), n)
    e = rng.dirichlet(np.ones(s), n)
    a = predictions_frame(test, test, {"X": (1 - d, d), "Y": (1 - e, e)}, seed=0)
    b = predictions_frame(test, test, {"X": (1 - d, d), "Z": (e, 1 - e)}, seed=0)
    return a, b


def test_merge_adds_missing_methods(tmp_path):
    """A + B holds X, Y and B's Z; the CLI writes it."""
    a, b = _frames()
    merged = merge_predictions(a, b)
    assert {c.split(".")[0] for c in merged.columns if "." in c} == {"X", "Y", "Z"}
    write_predictions(a, tmp_path / "a.parquet")
    write_predictions(b, tmp_path / "b.parquet")
    assert (
        main(
            [str(tmp_path / "m.parquet"), str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
        )
        == 0
    )
    assert pl.read_parquet(tmp_path / "m.parquet").equals(merged)


def test_merge_refuses_other_rows_or_methods():
    """Different rows, or a shared method with different values, are refused."""
    a, b = _frames()
    with pytest.raises(SegintError, match="exit_slot"):
        merge_predictions(a, b.with_columns(pl.col("exit_slot").reverse()))
    with pytest.raises(SegintError, match="method 'X' differs"):
        merge_predictions(a, b.with_columns(pl.col("X.watch_ms") + 1))
