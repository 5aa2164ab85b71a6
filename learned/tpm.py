"""``tpm``: a tree of ordinal binary classifiers over exit-slot intervals (after TPM, Lin et
al., KDD 2023, "Tree based Progressive Regression Model for Watch-Time Prediction").

The outcomes ``0..S`` (exit slot; ``N`` = watched to the end) are split recursively into two
intervals ``[lo, m]`` and ``[m + 1, hi]``, at the ``m`` that balances the training views on
either side, down to single slots or to nodes with fewer than ``MIN_ROWS`` training views
(or ``MAX_DEPTH``). Each internal node has a LightGBM classifier of ``P(exit > m | exit in
[lo, hi])``, fitted on the node's training views and early-stopped on its validation views
(views with ``N <= m`` cannot go right and are left out; their probability is 0). A view's
probability of a leaf is the product of the branch probabilities on its path; a leaf of
several slots spreads it over ``[lo, min(hi, N)]`` by the same-``N`` profile. The result is a
full exit distribution, so TPM gets HR/NDCG as well as MAE and XAUC.

Features: the view features of `learned.features` (no slot features: the tree is the slot).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from learned._lgb import fit_booster
from learned.base import LearnedInput, LearnedOutput
from learned.features import ViewFeatures, best_encoding

FloatArray = npt.NDArray[np.float64]
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "verbose": -1,
}
MAX_ROUNDS = 300
PATIENCE = 30
MIN_ROWS = 200  # training views a node needs for a classifier of its own
MAX_DEPTH = 8


@dataclass
class Node:
    """An interval of outcomes; internal nodes split it at ``m`` and hold a classifier."""

    lo: int
    hi: int
    m: int | None = None  # split point: left [lo, m], right [m + 1, hi]; None = leaf
    children: list[Node] = field(default_factory=list)
    p_right: FloatArray | None = None  # (n_test,) P(right | this node) once predicted
    rounds: int = 0


def balanced_split(exits: npt.NDArray[np.int64], lo: int, hi: int) -> int | None:
    """The ``m`` in ``[lo, hi)`` that best balances views with exit ``<= m`` and ``> m``,
    or None when every view sits on one outcome."""
    counts = np.bincount(exits - lo, minlength=hi - lo + 1).astype(np.float64)
    if (counts > 0).sum() < 2:
        return None
    left = np.cumsum(counts)[:-1]
    return lo + int(np.argmin(np.abs(2 * left - counts.sum())))


def fit_predict(data: LearnedInput) -> LearnedOutput:
    """Grow the tree on training views, fit one classifier per internal node, score test;
    the video statistics' encoding is chosen by the validation views' exit NLL."""
    return best_encoding(data, lambda feats: _fit(data, feats))


def _fit(data: LearnedInput, feats: ViewFeatures) -> tuple[LearnedOutput, float]:
    start = time.perf_counter()
    s = data.s_max
    exits = data.fit["exit_slot"].to_numpy().astype(np.int64)
    n_fit = data.fit["n_segments"].to_numpy().astype(np.int64)
    # Scored rows: the validation views (features from training rows), then the test views.
    n_valid = int(data.valid.sum())
    x_out = np.vstack([feats.fit[data.valid], feats.test])
    n_out = np.r_[n_fit[data.valid], data.test["n_segments"].to_numpy().astype(np.int64)]
    profile_out = np.vstack([feats.fit_length_profile[data.valid], feats.test_length_profile])
    params = {**PARAMS, "seed": data.seed, "num_threads": data.threads}
    root = Node(0, s)
    stack = [(root, 0)]
    internal = 0
    while stack:
        node, depth = stack.pop()
        in_node = (exits >= node.lo) & (exits <= node.hi)
        train_exits = exits[in_node & ~data.valid]
        if node.lo == node.hi or len(train_exits) < MIN_ROWS or depth >= MAX_DEPTH:
            continue
        m = balanced_split(train_exits, node.lo, node.hi)
        if m is None:
            continue
        rows = in_node & (n_fit > m)  # views with N <= m cannot leave after m
        y = (exits[rows] > m).astype(np.float64)
        train_y = y[~data.valid[rows]]
        if len(train_y) < MIN_ROWS or train_y.min() == train_y.max():
            continue  # nothing to learn here: the node stays a leaf
        booster = fit_booster(
            params,
            feats.fit[rows],
            y,
            data.valid[rows],
            feats.names,
            feats.categorical,
            MAX_ROUNDS,
            PATIENCE,
        )
        best = booster.best_iteration or booster.current_iteration()
        p = booster.predict(x_out, num_iteration=best)
        node.m, node.rounds, internal = m, int(best), internal + 1
        node.p_right = np.where(n_out > m, p, 0.0)
        node.children = [Node(node.lo, m), Node(m + 1, node.hi)]
        stack += [(c, depth + 1) for c in node.children]
    dist = np.zeros((len(n_out), s + 1))
    leaves = _spread(root, np.ones(len(n_out)), profile_out, n_out, dist)
    valid_p = dist[np.arange(n_valid), exits[data.valid]]
    loss = float(-np.mean(np.log(np.maximum(valid_p, 1e-12))))
    exit_dist = dist[n_valid:, :s]
    out = LearnedOutput(
        scores=1.0 - exit_dist,
        exit_dist=exit_dist,
        watch_slots=None,
        settings={
            "classifiers": internal,
            "leaves": leaves,
            "min_rows": MIN_ROWS,
            "max_depth": MAX_DEPTH,
            "rounds": _rounds(root),
            "criterion": "each node's classifier early-stopped on its validation views' log-loss",
            "params": {k: v for k, v in PARAMS.items() if k != "verbose"},
            "validation_exit_nll": loss,
            "train_seconds": round(time.perf_counter() - start, 2),
        },
    )
    return out, loss


def _spread(
    node: Node, mass: FloatArray, profile: FloatArray, n_seg: npt.NDArray[np.int64], out: FloatArray
) -> int:
    """Add each leaf's mass to ``out`` (n, S + 1); returns the number of leaves."""
    if node.m is None:
        slots = np.arange(out.shape[1])[None, :]
        inside = (slots >= node.lo) & (slots <= np.minimum(node.hi, n_seg)[:, None])
        w = np.where(inside, profile, 0.0)
        total = w.sum(axis=1, keepdims=True)
        uniform = inside / np.maximum(inside.sum(axis=1, keepdims=True), 1)
        w = np.where(total > 0, w / np.maximum(total, 1e-300), uniform)
        out += mass[:, None] * w
        return 1
    assert node.p_right is not None
    left, right = node.children
    return _spread(left, mass * (1.0 - node.p_right), profile, n_seg, out) + _spread(
        right, mass * node.p_right, profile, n_seg, out
    )


def _rounds(node: Node) -> dict[str, int]:
    """Boosting rounds of each internal node, keyed by its interval and split."""
    if node.m is None:
        return {}
    out = {f"[{node.lo},{node.hi}]@{node.m}": node.rounds}
    for c in node.children:
        out.update(_rounds(c))
    return out
