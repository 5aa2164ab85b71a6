"""Watch-time point estimates and their calibration (numpy only: `segint evaluate` and
`service/` import this one module, so the offline MAE and the served value are the same rule).

An exit distribution ``p`` puts mass on a view's ``N + 1`` outcomes (leave in slot ``0..N-1``,
or slot ``N``: watched to the end). Two point estimates of the exit slot:

* ``mean``: the expected slot, truncated (``int(sum_j j p_j)``, the reference's rule;
  `segint.heads.expected_exit_slot`), and its watch time ``sum_j p_j w_j`` (``expected_watch_ms``);
* ``median``: the smallest slot whose cumulative probability reaches 1/2. It minimises the
  expected absolute error, which is what MAE judges, so **the median is the served estimate**
  (``median_watch_ms`` of ``/score``; ``MAE`` in the evaluation report). The expected value
  stays beside it (``expected_watch_ms``; ``MAE_mean``) for consumers that need a mean.

Slot ``j < N`` counts as ``min((j + 1/2) * 5 s, duration)`` watched (mid-segment), slot ``N``
as the whole duration, as `segint.heads.expected_watch_ms` does.

Calibration: one temperature ``T`` divides the interest logits before the softmax
(``softmax(-logits / T)``). It leaves every ranking of slots unchanged (HR/NDCG are the same)
and changes only how peaked the distribution is, hence the median, the mean and
``completion_probability``. `fit_temperature` chooses ``T`` on validation rows by the exit
outcome's negative log-likelihood; the fitted value is stored with the run
(``RUN/calibration.json``), copied into the artifact manifest (``watch_time``) by
`segint export`, and applied by the service.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segint.errors import SegintError
from segint.heads import softmax_in_place
from segint.segments import SEGMENT_MS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
CALIBRATION_FILE = "calibration.json"
SERVED_ESTIMATE = "median"
# Log-spaced temperatures tried by fit_temperature, then refined around the best.
_T_GRID = np.exp(np.linspace(math.log(0.2), math.log(5.0), 49))


def median_exit_slot(dist: npt.ArrayLike) -> IntArray:
    """(n,) smallest slot whose cumulative probability reaches 1/2 (rows of ``dist`` sum to 1).

    A tolerance of 1e-12 keeps a cumulative sum that should be exactly 1/2 but rounds just
    below it from moving the median one slot up.
    """
    cdf = np.cumsum(np.asarray(dist, dtype=np.float64), axis=-1)
    out: IntArray = np.argmax(cdf >= 0.5 - 1e-12, axis=-1).astype(np.int64)
    return out


def slot_watch_ms(slot: npt.ArrayLike, duration_ms: npt.ArrayLike) -> FloatArray:
    """Watch time (ms) of ending in ``slot``: mid-segment, capped at the duration; ``N`` = all."""
    j = np.asarray(slot, dtype=np.float64)
    d = np.asarray(duration_ms, dtype=np.float64)
    n = np.ceil(d / SEGMENT_MS)
    out: FloatArray = np.where(j < n, np.minimum((j + 0.5) * SEGMENT_MS, d), d)
    return out


def median_watch_ms(dist: npt.ArrayLike, duration_ms: npt.ArrayLike) -> FloatArray:
    """(n,) the served watch-time estimate: the watch time of the median exit slot."""
    return slot_watch_ms(median_exit_slot(dist), duration_ms)


def true_watch_ms(play_time_ms: npt.ArrayLike, duration_ms: npt.ArrayLike) -> FloatArray:
    """Observed watch time for XAUC: play time capped at the duration (replays count once)."""
    out: FloatArray = np.minimum(
        np.asarray(play_time_ms, dtype=np.float64), np.asarray(duration_ms, dtype=np.float64)
    )
    return out


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> FloatArray:
    """Interest logits divided by ``T`` (``T > 1`` flattens the exit distribution)."""
    out: FloatArray = np.asarray(logits, dtype=np.float64) / float(temperature)
    return out


def calibrated_exit_distribution(
    logits: npt.ArrayLike, n_segments: npt.ArrayLike, temperature: float
) -> FloatArray:
    """``softmax(-logits / T)`` over each row's outcomes ``0..N`` (0 on the other slots): the
    same values, bit for bit, as ``heads.exit_distribution(apply_temperature(logits, T),
    heads.outcome_mask(N, S))``, computed in place on one float64 array (the service's form:
    it runs once per request on (C, S))."""
    z: FloatArray = np.divide(logits, float(temperature), dtype=np.float64)  # as apply_temperature
    np.negative(z, out=z)
    n = np.asarray(n_segments, dtype=np.int64)
    return softmax_in_place(z, np.arange(z.shape[-1])[None, :] > n[:, None])  # 0 past N


def exit_nll(
    logits: npt.ArrayLike, target: npt.ArrayLike, n_segments: npt.ArrayLike, temperature: float
) -> float:
    """Mean negative log-likelihood of the exit slot under ``softmax(-logits / T)`` over the
    ``N + 1`` outcomes; rows whose exit has no slot (``target == S``) are left out."""
    z = -apply_temperature(logits, temperature)
    t = np.asarray(target, dtype=np.int64)
    n = np.asarray(n_segments, dtype=np.int64)
    s = z.shape[1]
    ok = t < s
    z, t, n = z[ok], t[ok], n[ok]
    if len(t) == 0:
        return float("nan")
    z = np.where(np.arange(s)[None, :] <= n[:, None], z, -np.inf)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(t)), t]))


def median_mae(
    logits: npt.ArrayLike, target: npt.ArrayLike, n_segments: npt.ArrayLike, temperature: float
) -> float:
    """Mean absolute error (slots) of the median of ``softmax(-logits / T)`` over the ``N + 1``
    outcomes: the served estimate's error, as the strict protocol's ``MAE``."""
    z = -apply_temperature(logits, temperature)
    n = np.asarray(n_segments, dtype=np.int64)
    z = np.where(np.arange(z.shape[1])[None, :] <= n[:, None], z, -np.inf)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    med = median_exit_slot(p / p.sum(axis=1, keepdims=True))
    return float(np.mean(np.abs(med - np.asarray(target, dtype=np.int64))))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and where it came from (``RUN/calibration.json``)."""

    temperature: float  # divides the interest logits before the softmax
    fitted_on: str  # which rows chose it, in words
    rows: int  # how many
    nll_before: float  # validation NLL of the exit slot at T = 1
    nll_after: float  # ... at the fitted T
    served_estimate: str = SERVED_ESTIMATE  # the point estimate /score's median_watch_ms holds
    criterion: str = "nll"  # what chose T: "nll", or "mae" (the served median's error)
    mae_before: float | None = None  # validation MAE of the median at T = 1 ...
    mae_after: float | None = None  # ... and at the fitted T

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def fit_temperature(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    n_segments: npt.ArrayLike,
    fitted_on: str,
    criterion: str = "nll",
) -> Calibration:
    """The temperature in [0.2, 5] with the lowest validation NLL of the exit slot, or with
    ``criterion="mae"`` the lowest validation MAE of the median (the served estimate).

    NLL: a log-spaced grid of 49 values, then a second grid of 41 between the best value's
    neighbours (the NLL is smooth and, in ``log T``, close to convex). MAE: the same 49 values
    and 1 (the MAE is a step function of T); among equal values the T closest to 1 is kept.
    """
    lg = np.asarray(logits, dtype=np.float64)
    if lg.shape[0] == 0:
        raise SegintError("no validation rows to fit the watch-time temperature on")
    if criterion not in ("nll", "mae"):
        raise SegintError(f"temperature criterion must be nll or mae, got {criterion!r}")

    def nll(t: float) -> float:
        return exit_nll(lg, target, n_segments, t)

    def mae(t: float) -> float:
        return median_mae(lg, target, n_segments, t)

    if criterion == "mae":
        grid = np.unique(np.r_[_T_GRID, 1.0])
        values = [(round(mae(float(t)), 12), abs(math.log(t))) for t in grid]
        best = float(grid[min(range(len(grid)), key=lambda i: values[i])])
        return Calibration(
            temperature=best,
            fitted_on=fitted_on,
            rows=int(lg.shape[0]),
            nll_before=nll(1.0),
            nll_after=nll(best),
            criterion="mae",
            mae_before=mae(1.0),
            mae_after=mae(best),
        )

    coarse = [nll(float(t)) for t in _T_GRID]
    i = int(np.nanargmin(coarse))
    lo, hi = _T_GRID[max(i - 1, 0)], _T_GRID[min(i + 1, len(_T_GRID) - 1)]
    fine = np.exp(np.linspace(math.log(lo), math.log(hi), 41))
    fine_nll = [nll(float(t)) for t in fine]
    j = int(np.nanargmin(fine_nll))
    return Calibration(
        temperature=float(fine[j]),
        fitted_on=fitted_on,
        rows=int(lg.shape[0]),
        nll_before=nll(1.0),
        nll_after=float(fine_nll[j]),
    )


def read_calibration(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/calibration.json`` as a dict, or None when the run was never calibrated."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        temperature = float(data["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SegintError(f"{path}: unreadable calibration ({e})") from None
    if not (math.isfinite(temperature) and temperature > 0):
        raise SegintError(f"{path}: temperature must be > 0, got {temperature}")
    return data


def manifest_temperature(watch_time: dict[str, Any] | None) -> float:
    """The temperature an artifact's manifest ``watch_time`` entry carries (1 without one)."""
    if not watch_time:
        return 1.0
    t = float(watch_time.get("temperature", 1.0))
    if not (math.isfinite(t) and t > 0):
        raise SegintError(f"manifest watch_time temperature must be > 0, got {t}")
    return t
