"""training/merge_predictions.py: one model's columns next to another's, same rows only."""

from __future__ import annotations

import polars as pl
import pytest

from training.merge_predictions import merge


def _frame(seed: int, user: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [user, 2],
            "video_id": [10, 11],
            "time_ms": [5, 6],
            "exit_slot": [0, 1],
            "tie_seed": [0, 0],
            "SegInterest.scores": [[0.1 * seed, 0.2], [0.3, 0.4]],
            "SegInterest.watch_ms": [1.0 * seed, 2.0],
        }
    )


def test_merge_renames_the_other_files_method() -> None:
    out = merge(_frame(1), _frame(7), "SegInterest", "SegInterest@B")
    assert out["SegInterest@B.watch_ms"].to_list() == [7.0, 2.0]
    assert out["SegInterest.watch_ms"].to_list() == [1.0, 2.0]
    assert out["SegInterest@B.scores"].to_list()[0] == pytest.approx([0.7, 0.2])


def test_merge_refuses_other_rows_and_clashing_names() -> None:
    with pytest.raises(ValueError, match="same rows"):
        merge(_frame(1), _frame(7, user=3), "SegInterest", "SegInterest@B")
    with pytest.raises(ValueError, match="already"):
        merge(_frame(1), _frame(7), "SegInterest", "SegInterest")
    with pytest.raises(ValueError, match="no columns"):
        merge(_frame(1), _frame(7), "Other", "X")
