"""The learned-baseline contract: registry, output checks, point estimates in the report."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from learned import LEARNED, get_learner
from learned.base import LearnedOutput, check_output, point_estimate_dist, to_method
from segint.metrics import RANK_METRICS
from segint.report import evaluate_methods, format_table
from segint.watchtime import median_exit_slot


def _rows(n_segments: list[int], exits: list[int]) -> pl.DataFrame:
    n = len(exits)
    dur = [k * 5000 - 100 for k in n_segments]
    play = [dur[i] if e == n_segments[i] else e * 5000 + 2500 for i, e in enumerate(exits)]
    return pl.DataFrame(
        {
            "user_id": list(range(n)),
            "video_id": [7] * n,
            "time_ms": list(range(n)),
            "duration_ms": dur,
            "play_time_ms": play,
            "n_segments": n_segments,
            "exit_slot": exits,
        }
    )


def test_registry_names_the_issue_methods():
    """Every method of issue 13 is registered; an unknown name is a KeyError listing them."""
    assert set(LEARNED) == {"hazard-gbdt", "din-slot", "sasrec", "tpm", "d2q"}
    with pytest.raises(KeyError, match="hazard-gbdt"):
        get_learner("xgboost")
    assert callable(get_learner("d2q"))


def test_point_estimate_dist_mean_and_median():
    """2.3 -> 0.7 on slot 2 and 0.3 on slot 3 (mean 2.3, median 2); 2.6 -> median 3;
    estimates beyond N or below 0 are clipped to the real outcomes."""
    d = point_estimate_dist([2.3, 2.6, 9.0, -1.0], [5, 5, 4, 5], 6)
    assert d[0, 2] == pytest.approx(0.7) and d[0, 3] == pytest.approx(0.3)
    assert (d * np.arange(6)).sum(axis=1)[:2] == pytest.approx([2.3, 2.6])
    assert median_exit_slot(d).tolist() == [2, 3, 4, 0]
    assert d.sum(axis=1) == pytest.approx(np.ones(4))


def test_check_output_refuses_bad_shapes():
    """Wrong shapes, no estimate at all, or a distribution summing above 1 are refused."""
    ok = np.full((2, 3), 1 / 3)
    check_output("m", LearnedOutput(ok, ok, None), 2, 3)
    with pytest.raises(ValueError, match="shape"):
        check_output("m", LearnedOutput(np.zeros((2, 4)), None, np.zeros(2)), 2, 3)
    with pytest.raises(ValueError, match="neither"):
        check_output("m", LearnedOutput(ok, None, None), 2, 3)
    with pytest.raises(ValueError, match="more than 1"):
        check_output("m", LearnedOutput(ok, ok * 2, None), 2, 3)


def test_point_estimate_method_has_mae_and_xauc_but_no_ranking():
    """A point-estimate method reports MAE, MAE_mean and XAUC only; the table prints '-'."""
    test = _rows([4, 4, 4, 2], [0, 1, 4, 2])
    out = LearnedOutput(np.zeros((4, 5)), None, np.array([0.6, 1.4, 3.9, 1.9]))
    scores, dist = to_method("pt", out, test, 5)
    assert np.isnan(scores).all()
    report = evaluate_methods(test, test, {"pt": (scores, dist)})
    for key in ("paper", "strict"):
        metrics = report[key]["pt"]
        assert not set(RANK_METRICS) & set(metrics)
        # rounded estimates 1, 1, 4, 2 against exits 0, 1, 4, 2; watch times in the same order
        assert metrics["MAE"] == pytest.approx(0.25)
        assert metrics["XAUC"] == pytest.approx(1.0)
    assert "pt" in format_table(report)
