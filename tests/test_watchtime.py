"""The served watch-time estimate (median) and its temperature calibration, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segint.errors import SegintError
from segint.heads import exit_distribution, outcome_mask
from segint.watchtime import (
    CALIBRATION_FILE,
    exit_nll,
    fit_temperature,
    manifest_temperature,
    median_exit_slot,
    median_watch_ms,
    read_calibration,
    slot_watch_ms,
)


def test_median_slot_by_hand():
    """Smallest slot whose cumulative probability reaches 1/2 (an exact 1/2 stops there)."""
    dist = np.array([[0.2, 0.2, 0.2, 0.4], [0.5, 0.0, 0.0, 0.5], [0.1, 0.1, 0.1, 0.7]])
    assert median_exit_slot(dist).tolist() == [2, 0, 3]
    # 0.1 + 0.2 + 0.2 is 0.5000000000000001 or 0.49999999999999994 depending on order
    assert median_exit_slot(np.array([[0.1, 0.2, 0.2, 0.5]])).tolist() == [2]


def test_median_minimises_the_absolute_error():
    """Over every slot, the median's expected absolute error is the smallest."""
    rng = np.random.default_rng(1)
    dist = rng.dirichlet(np.ones(8), 200)
    med = median_exit_slot(dist)
    slots = np.arange(8)
    err = np.abs(slots[None, :, None] - slots[None, None, :]) * dist[:, None, :]  # (n, guess, V)
    expected_err = err.sum(axis=2)  # (n, guess)
    np.testing.assert_allclose(expected_err[np.arange(200), med], expected_err.min(axis=1))


def test_watch_ms_of_a_slot():
    """Mid-segment for j < N, capped at the duration; slot N is the whole duration."""
    dur = [12300, 12300, 12300, 4000]
    assert slot_watch_ms([0, 2, 3, 0], dur).tolist() == [2500, 12300, 12300, 2500]
    assert slot_watch_ms([1], [4000]).tolist() == [4000]  # N = 1: slot 1 = completion
    dist = np.array([[0.1, 0.1, 0.6, 0.2]])  # N = 3, median slot 2 -> min(12.5 s, 12.3 s)
    assert median_watch_ms(dist, [12300]).tolist() == [12300]


def test_temperature_fit_recovers_the_generating_temperature():
    """Exits drawn from softmax(-logits / 2) are best explained by T close to 2, and the NLL
    at the fitted T is below the NLL at T = 1."""
    rng = np.random.default_rng(0)
    n, s = 4000, 6
    logits = rng.normal(0, 2, (n, s))
    n_seg = rng.integers(1, s, n)
    dist = exit_distribution(logits / 2.0, outcome_mask(n_seg, s))
    target = np.array([rng.choice(s, p=p) for p in dist])
    cal = fit_temperature(logits, target, n_seg, fitted_on="synthetic")
    assert cal.temperature == pytest.approx(2.0, rel=0.1)
    assert cal.nll_after < cal.nll_before == pytest.approx(exit_nll(logits, target, n_seg, 1.0))
    assert cal.rows == n and cal.served_estimate == "median"


def test_calibration_file_round_trip(tmp_path):
    """Written next to the run, read back; a bad temperature is a one-line error."""
    cal = fit_temperature(np.zeros((3, 4)), [0, 1, 2], [3, 3, 3], fitted_on="x")
    cal.write(tmp_path)
    assert read_calibration(tmp_path)["temperature"] == cal.temperature
    assert read_calibration(tmp_path / "missing") is None
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(SegintError, match="temperature must be > 0"):
        read_calibration(tmp_path)
    assert manifest_temperature(None) == 1.0
    assert manifest_temperature({"temperature": 1.5}) == 1.5
