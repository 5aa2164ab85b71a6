"""Position baselines for skip prediction (spec section 3; reference section 5.3).

Each baseline turns exit statistics of the fitting rows into, per test row and slot, an
interest score ("probability of *not* leaving in this slot", higher = more interest) and an
exit distribution over slots:

* ``Random``: uniform random scores (seeded); uniform exit distribution.
* ``AllPosition``: the global exit distribution ``g_j`` over slots; score ``1 - g_j``.
* ``UserPosition``: the user's exit distribution; users without fitting rows get ``g``.
* ``ItemPosition``: the video's exit distribution; cold videos get ``g``. With few views per
  video most slots were never left at, so they tie at score 1.
* ``ItemPosition+prior``: the video's exit counts smoothed toward ``g`` with ``alpha``
  pseudo-views, ``(c_vj + alpha * g_j) / (n_v + alpha)``; breaks those ties by the global
  profile, the strongest simple baseline on sparse logs.
* ``AllPosition|N``: the exit distribution of the fitting views of videos with the same
  number of segments ``N`` as the test row's video; an ``N`` never seen gets ``g``.
* ``ItemPosition+prior|N``: the video's exit counts smoothed toward that same-``N`` profile
  ``g^N`` with ``a`` pseudo-views, ``(c_vj + a * g^N_j) / (n_v + a)``; cold videos get ``g^N``.
  ``a`` is chosen on validation rows by `choose_prior_strength` unless given.

Scores are deterministic probabilities by default; ``bernoulli=True`` replaces them with
Bernoulli draws, as the reference's MostPopular script does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]
MethodScores = dict[str, tuple[FloatArray, FloatArray]]  # name -> (scores, exit_dist), (n, S)
BASELINES = (
    "Random",
    "AllPosition",
    "UserPosition",
    "ItemPosition",
    "ItemPosition+prior",
    "AllPosition|N",
    "ItemPosition+prior|N",
)
PRIOR_GRID = (
    0.5,
    1.0,
    2.0,
    4.0,
    8.0,
    16.0,
    32.0,
    64.0,
)  # a tried for ItemPosition+prior|N on validation


def exit_counts(
    keys: npt.NDArray[np.int64], exits: npt.NDArray[np.int64], n_keys: int, s_max: int
) -> FloatArray:
    """(n_keys, s_max) counts of exits per key and slot; exits at ``s_max`` have no slot."""
    ok = exits < s_max
    flat = keys[ok] * s_max + exits[ok]
    return np.bincount(flat, minlength=n_keys * s_max).reshape(n_keys, s_max).astype(np.float64)


def _grouped_profile(
    fit_keys: npt.ArrayLike,
    fit_exits: npt.ArrayLike,
    test_keys: npt.ArrayLike,
    s_max: int,
    alpha: float,
) -> FloatArray:
    """Per test row, the exit distribution of its key in the fitting rows.

    ``alpha`` pseudo-views of the global distribution are added to every key; keys without
    fitting rows get the global distribution. ``alpha = 0`` gives raw per-key frequencies.
    """
    fk = np.asarray(fit_keys)
    tk = np.asarray(test_keys)
    exits = np.asarray(fit_exits, dtype=np.int64)
    uniq, fit_idx = np.unique(fk, return_inverse=True)
    counts = exit_counts(fit_idx.astype(np.int64), exits, len(uniq), s_max)
    glob = counts.sum(axis=0)
    glob = glob / max(glob.sum(), 1.0)
    pos = np.searchsorted(uniq, tk)
    pos_c = np.minimum(pos, len(uniq) - 1)
    known = (pos < len(uniq)) & (uniq[pos_c] == tk)
    out = np.tile(glob, (len(tk), 1))
    c = counts[pos_c[known]]
    n = c.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = (c + alpha * glob) / (n + alpha)
    out[known] = np.where(n + alpha > 0, prof, glob)
    return out


def _key_counts(
    fit_keys: npt.ArrayLike, fit_exits: npt.ArrayLike, test_keys: npt.ArrayLike, s_max: int
) -> FloatArray:
    """(n_test, s_max) exit counts of each test row's key in the fitting rows (0 if unseen)."""
    fk = np.asarray(fit_keys)
    tk = np.asarray(test_keys)
    uniq, fit_idx = np.unique(fk, return_inverse=True)
    counts = exit_counts(
        fit_idx.astype(np.int64), np.asarray(fit_exits, np.int64), len(uniq), s_max
    )
    out = np.zeros((len(tk), s_max))
    if len(uniq) == 0:
        return out
    pos = np.minimum(np.searchsorted(uniq, tk), len(uniq) - 1)
    known = uniq[pos] == tk
    out[known] = counts[pos[known]]
    return out


def length_profiles(
    fit: pl.DataFrame, test: pl.DataFrame, s_max: int, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """``(AllPosition|N, ItemPosition+prior|N)`` exit distributions of the rows of ``test``.

    ``g^N``: exit frequencies of the fitting views of ``N``-segment videos (the global
    profile ``g`` where no fitting view has that ``N``); then each video's counts ``c_v``
    smoothed toward its ``g^N`` with ``alpha`` pseudo-views: ``(c_v + alpha g^N) / (n_v +
    alpha)``, which is ``g^N`` for a video without fitting rows.
    """
    exits = fit["exit_slot"].to_numpy()
    glob = exit_counts(np.zeros(fit.height, np.int64), exits, 1, s_max)[0]
    glob = glob / max(glob.sum(), 1.0)
    by_n = _key_counts(fit["n_segments"], exits, test["n_segments"], s_max)
    n_n = by_n.sum(axis=1, keepdims=True)
    prior = np.where(n_n > 0, by_n / np.maximum(n_n, 1.0), glob[None, :])
    c = _key_counts(fit["video_id"], exits, test["video_id"], s_max)
    n_v = c.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        item = (c + alpha * prior) / (n_v + alpha)
    item = np.where(n_v + alpha > 0, item, prior)
    return prior, item


def choose_prior_strength(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    s_max: int = 40,
    seed: int = 0,
    grid: tuple[float, ...] = PRIOR_GRID,
    protocol: str = "strict",
) -> tuple[float, dict[str, float]]:
    """The ``a`` of ``ItemPosition+prior|N`` with the best validation NDCG@5.

    Profiles are fitted on ``train`` only and scored on ``valid`` (``protocol``; ties between
    grid values go to the smaller ``a``). Returns ``(a, {str(a): NDCG@5})``.
    """
    from segint.metrics import evaluate_scores

    if train.height == 0 or valid.height == 0:
        raise ValueError(f"need training and validation rows, got {train.height}, {valid.height}")
    table: dict[str, float] = {}
    target = valid["exit_slot"].to_numpy()
    n_seg = valid["n_segments"].to_numpy()
    for a in grid:
        _, dist = length_profiles(train, valid, s_max, a)
        table[str(a)] = evaluate_scores(1.0 - dist, dist, target, n_seg, protocol, seed)["NDCG@5"]
    best = max(grid, key=lambda a: (table[str(a)], -a))
    return float(best), table


def baseline_scores(
    fit: pl.DataFrame,
    test: pl.DataFrame,
    s_max: int = 40,
    seed: int = 0,
    prior_strength: float = 1.0,
    bernoulli: bool = False,
    prior_strength_n: float = 1.0,
) -> MethodScores:
    """Scores and exit distributions of every baseline for the rows of ``test``.

    Args:
        fit: rows the statistics come from (training, plus validation as in the reference).
        test: rows to score.
        s_max: slots per video.
        seed: seed for Random and for Bernoulli draws.
        prior_strength: pseudo-views of the global profile for ``ItemPosition+prior``.
        bernoulli: draw 0/1 scores from the probabilities (reference behaviour).
        prior_strength_n: pseudo-views of the same-N profile for ``ItemPosition+prior|N``.
    """
    rng = np.random.default_rng(seed)
    n = test.height
    exits = fit["exit_slot"].to_numpy()
    zeros = np.zeros(fit.height, dtype=np.int64)
    profiles = {
        "AllPosition": _grouped_profile(zeros, exits, np.zeros(n, np.int64), s_max, 0.0),
        "UserPosition": _grouped_profile(fit["user_id"], exits, test["user_id"], s_max, 0.0),
        "ItemPosition": _grouped_profile(fit["video_id"], exits, test["video_id"], s_max, 0.0),
        "ItemPosition+prior": _grouped_profile(
            fit["video_id"], exits, test["video_id"], s_max, prior_strength
        ),
    }
    profiles["AllPosition|N"], profiles["ItemPosition+prior|N"] = length_profiles(
        fit, test, s_max, prior_strength_n
    )
    out: MethodScores = {"Random": (rng.random((n, s_max)), np.full((n, s_max), 1.0 / s_max))}
    for name, dist in profiles.items():
        scores = 1.0 - dist
        if bernoulli:
            scores = (rng.random(scores.shape) < scores).astype(np.float64)
        out[name] = (scores, dist)
    return out
