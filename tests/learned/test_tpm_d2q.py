"""TPM's tree and D2Q's quantile labels on hand-made numbers; both on a tiny real log."""

from __future__ import annotations

import numpy as np
import pytest

from learned import d2q, tpm


def test_balanced_split():
    """Half the views at slot 0 -> split after 0; one outcome only -> no split."""
    assert tpm.balanced_split(np.array([0, 0, 0, 1, 2, 3]), 0, 5) == 0
    assert tpm.balanced_split(np.array([3, 4, 5, 6]), 2, 8) == 4
    assert tpm.balanced_split(np.array([2, 2, 2]), 0, 5) is None


def test_tpm_distribution_is_proper(tiny_input):
    """Every test row's distribution sums to 1 over slots 0..N (less only the completion mass
    of N = S_max rows, which has no column) and puts no mass beyond N; the tree has at least
    one classifier."""
    out = tpm.fit_predict(tiny_input)
    n = tiny_input.test["n_segments"].to_numpy()
    assert out.exit_dist is not None and out.settings["classifiers"] >= 1
    short = n < 40
    assert short.sum() > 50
    assert out.exit_dist[short].sum(axis=1) == pytest.approx(np.ones(short.sum()))
    assert (out.exit_dist[~short].sum(axis=1) <= 1 + 1e-9).all()
    beyond = np.arange(40)[None, :] > n[:, None]
    assert np.abs(out.exit_dist[beyond]).max() == 0.0


def test_quantile_labels_mid_rank():
    """Group 3 reference exits (0, 0, 1, 3): exit 0 -> (0 + 2) / 8, exit 1 -> (2 + 3) / 8,
    exit 3 -> (3 + 4) / 8; a group without reference views gets 1/2."""
    q = d2q.quantile_labels(
        np.array([3, 3, 3, 5]),
        np.array([0, 1, 3, 2]),
        np.array([3, 3, 3, 3]),
        np.array([0, 0, 1, 3]),
    )
    assert q == pytest.approx([2 / 8, 5 / 8, 7 / 8, 0.5])


def test_quantile_slots_invert_labels():
    """The quantile function maps a reference view's mid-rank back to its exit, interpolates
    between neighbours, and clips the pooled fallback to N."""
    ref_g, ref_e = np.array([3, 3, 3, 3]), np.array([0, 0, 1, 3])
    slots = d2q.quantile_slots(
        np.array([5 / 8, 7 / 8, 6 / 8, 0.99]), np.array([3, 3, 3, 2]), ref_g, ref_e
    )
    assert slots[:3] == pytest.approx([1.0, 3.0, 2.0])
    assert slots[3] == pytest.approx(2.0)  # pooled exits clipped to N = 2


def test_d2q_point_estimates(tiny_input):
    """D2Q gives fractional slots within 0..N and no distribution."""
    out = d2q.fit_predict(tiny_input)
    n = tiny_input.test["n_segments"].to_numpy()
    assert out.exit_dist is None and out.watch_slots is not None
    assert (out.watch_slots >= 0).all() and (out.watch_slots <= n).all()
    assert len(np.unique(out.watch_slots)) > 10  # not a constant
