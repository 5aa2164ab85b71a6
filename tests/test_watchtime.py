"""The served watch-time estimate (median) and its temperature calibration, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segint.errors import SegintError
from segint.heads import exit_distribution, outcome_mask
from segint.watchtime import (
    CALIBRATION_FILE,
    apply_temperature,
    calibrated_exit_distribution,
    exit_nll,
    fit_temperature,
    manifest_temperature,
    median_exit_slot,
    median_mae,
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


def test_median_mae_by_hand():
    """The median of softmax(-logits / T) over the N + 1 outcomes against the exit slot."""
    logits = np.log(np.array([[1.0, 1.0, 1.0, 5.0], [0.5, 0.2, 0.1, 0.2]]))
    # row 0, N = 2: exit probabilities over slots 0..2 ∝ [1, 1, 1] -> median slot 1
    # row 1, N = 3: ∝ [2, 5, 10, 5] / 22 -> cumulative 2/22, 7/22, 17/22: median slot 2
    assert median_mae(logits, [2, 0], [2, 3], 1.0) == pytest.approx((1 + 2) / 2)
    # T = 1/2 sharpens row 1 to [4, 25, 100, 25] / 154: still slot 2; row 0 stays uniform
    assert median_mae(logits, [2, 0], [2, 3], 0.5) == pytest.approx((1 + 2) / 2)
    assert median_mae(logits, [1, 2], [2, 3], 1.0) == 0.0


def test_temperature_by_mae_minimises_the_validation_mae():
    """criterion="mae": the chosen T has the lowest median MAE of the grid (ties: closest to
    1), never above T = 1's; the NLL values are still recorded."""
    rng = np.random.default_rng(1)
    n, s = 600, 8
    logits = rng.normal(0, 2, (n, s))
    n_seg = rng.integers(1, s, n)
    dist = exit_distribution(logits / 0.5, outcome_mask(n_seg, s))
    target = np.array([rng.choice(s, p=p) for p in dist])
    cal = fit_temperature(logits, target, n_seg, fitted_on="synthetic", criterion="mae")
    grid = np.unique(np.r_[np.exp(np.linspace(np.log(0.2), np.log(5.0), 49)), 1.0])
    maes = np.array([median_mae(logits, target, n_seg, t) for t in grid])
    assert cal.mae_after == pytest.approx(maes.min())
    assert cal.mae_after <= cal.mae_before
    assert cal.mae_before == pytest.approx(median_mae(logits, target, n_seg, 1.0))
    assert cal.criterion == "mae" and cal.temperature in grid
    assert cal.mae_after < cal.mae_before  # sharper than the logits: T < 1 helps here
    assert cal.nll_after == pytest.approx(exit_nll(logits, target, n_seg, cal.temperature))
    with pytest.raises(SegintError, match="criterion"):
        fit_temperature(logits, target, n_seg, fitted_on="x", criterion="ece")


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


@pytest.mark.parametrize("temperature", [1.0, 0.37, 2.5])
def test_calibrated_exit_distribution_is_the_composed_heads_bit_for_bit(temperature: float) -> None:
    """The service's in-place form equals `apply_temperature` -> `heads.exit_distribution` over
    `heads.outcome_mask` exactly (float32 logits as the scorer returns them, N from 1 to S,
    the +1e4 logits of impossible slots included)."""
    rng = np.random.default_rng(5)
    s = 40
    n_seg = np.concatenate([[1, s, s - 1], rng.integers(1, s + 1, 200)])
    logits = (rng.normal(size=(len(n_seg), s)) * 3).astype(np.float32)
    logits[np.arange(s)[None, :] > n_seg[:, None]] = 1e4
    want = exit_distribution(apply_temperature(logits, temperature), outcome_mask(n_seg, s))
    got = calibrated_exit_distribution(logits, n_seg, temperature)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
