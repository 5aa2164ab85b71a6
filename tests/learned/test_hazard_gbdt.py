"""hazard-gbdt: the hazard -> exit distribution algebra, and no leak of the view's outcome."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from learned.features import ENCODINGS, view_features
from learned.hazard_gbdt import exit_distribution, fit_predict, profile_hazards

OUTCOMES = (
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
)


def test_exit_distribution_by_hand():
    """h = (0.5, 0.2, 0.4) for N = 3: P = 0.5, 0.5*0.8... computed by hand; hazards at slots
    >= N are ignored; an N = S_max view's completion mass has no column."""
    h = np.array([[0.5, 0.2, 0.4, 0.9, 0.9], [0.1, 0.5, 0.5, 0.5, 0.5]])
    d = exit_distribution(h, np.array([3, 5]), 5)
    assert d[0] == pytest.approx([0.5, 0.5 * 0.2, 0.5 * 0.8 * 0.4, 0.5 * 0.8 * 0.6, 0.0])
    assert d[0].sum() == pytest.approx(1.0)
    assert d[1] == pytest.approx([0.1, 0.45, 0.225, 0.1125, 0.05625])
    assert d[1].sum() == pytest.approx(1.0 - 0.9 * 0.5**4)  # the completion's 0.05625 has no slot


def test_profile_hazards_invert_exit_distribution():
    """Hazards of a profile over S + 1 outcomes give the profile back."""
    p = np.array([[0.4, 0.3, 0.2, 0.1]])
    h = profile_hazards(p)
    assert h[0] == pytest.approx([0.4, 0.5, 2 / 3, 1.0])
    assert exit_distribution(h, np.array([3]), 4)[0] == pytest.approx(p[0])


def _with_outcomes(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The frame plus every outcome column, filled with values that reveal the exit slot."""
    rng = np.random.default_rng(seed)
    e = frame["exit_slot"].to_numpy()
    n = frame["n_segments"].to_numpy()
    cols = {c: rng.integers(0, 2, frame.height) for c in OUTCOMES}
    cols["long_view"] = (e == n).astype(np.int64)
    cols["profile_stay_time"] = e * 1000 + rng.integers(0, 10, frame.height)
    return frame.with_columns(pl.Series(k, v) for k, v in cols.items())


def test_outcome_columns_never_enter(tiny_input):
    """Adding the view's outcome columns (with values that give its exit away) changes neither
    the features nor hazard-gbdt's predictions; no feature is named after one."""
    leaky = dataclasses.replace(
        tiny_input, fit=_with_outcomes(tiny_input.fit, 1), test=_with_outcomes(tiny_input.test, 2)
    )
    for encoding in ENCODINGS:
        clean_f, leaky_f = view_features(tiny_input, encoding), view_features(leaky, encoding)
        assert not set(OUTCOMES) & set(clean_f.names)
        np.testing.assert_array_equal(clean_f.fit, leaky_f.fit)
        np.testing.assert_array_equal(clean_f.test, leaky_f.test)
    np.testing.assert_array_equal(fit_predict(tiny_input).exit_dist, fit_predict(leaky).exit_dist)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("part", ["fit", "test"])
def test_own_exit_never_enters_own_features(tiny_input, part, encoding):
    """A view's own exit slot and play time leave its own feature row unchanged (video
    statistics leave its view out; user statistics use strictly earlier views)."""
    base = view_features(tiny_input, encoding)
    frame = getattr(tiny_input, part)
    rng = np.random.default_rng(0)
    moved = False
    for i in map(int, rng.choice(frame.height, 8, replace=False)):
        n = int(frame["n_segments"][i])
        new_exit = (int(frame["exit_slot"][i]) + 1) % (n + 1)
        play = int(frame["duration_ms"][i]) if new_exit == n else new_exit * 5000 + 1
        changed = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == i).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
            for c, v in (("exit_slot", new_exit), ("play_time_ms", play))
        )
        other = view_features(dataclasses.replace(tiny_input, **{part: changed}), encoding)
        np.testing.assert_array_equal(getattr(base, part)[i], getattr(other, part)[i])
        moved |= not np.array_equal(base.fit, other.fit)
    assert moved or part == "test"  # the change did reach other training rows' statistics
