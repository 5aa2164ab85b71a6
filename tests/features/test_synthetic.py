"""Synthetic logs with content-driven exits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from segint.cli import main
from segint.data import CANONICAL, load_table
from segint.features import FeatureStore
from segint.features.synthetic import generate
from segint.segments import exit_slot, n_segments

SIZES = {"n_users": 60, "n_videos": 300, "n_views": 6000, "dim": 16}


def test_deterministic_by_seed(tmp_path: Path) -> None:
    """Same seed -> identical log and features; another seed -> a different log."""
    a, sa = generate(**SIZES, seed=3, out_dir=tmp_path / "a")
    b, sb = generate(**SIZES, seed=3, out_dir=tmp_path / "b")
    c, _ = generate(**SIZES, seed=4, out_dir=tmp_path / "c")
    assert a.equals(b) and not a.equals(c)
    fa, fb = FeatureStore.open(sa), FeatureStore.open(sb)
    ids = fa.video_ids
    np.testing.assert_array_equal(fa.video_matrix(ids, 12, 12)[0], fb.video_matrix(ids, 12, 12)[0])


def test_log_is_canonical_and_consistent(tmp_path: Path) -> None:
    """Canonical int64 columns, sorted, plausible exits; every segment has a feature."""
    log, store_path = generate(**SIZES, seed=0, out_dir=tmp_path)
    assert log.columns == CANONICAL and all(t == pl.Int64 for t in log.dtypes)
    assert log.height == SIZES["n_views"]
    assert log.equals(log.sort(["user_id", "time_ms"]))
    play, dur = log["play_time_ms"].to_numpy(), log["duration_ms"].to_numpy()
    assert (play >= 1).all() and (play <= dur).all()
    exits, n = exit_slot(play, dur), n_segments(dur)
    assert 0.1 < (exits == n).mean() < 0.6 and 0.1 < (exits == 0).mean() < 0.5
    store = FeatureStore.open(store_path)
    assert store.dim == SIZES["dim"] and len(store) == SIZES["n_videos"]
    # Every viewed video has a vector for exactly its segments.
    vids = log["video_id"].to_numpy()
    _, mask = store.video_matrix(vids, n, 40)
    assert mask.sum(axis=1).tolist() == n.tolist()
    # The data pipeline reads it as a canonical log.
    df = load_table(tmp_path / "log.parquet", "canonical")
    assert df.height == log.height


def _exit_vs_watched_similarity(log: pl.DataFrame, store: FeatureStore) -> float:
    """How much less the exit segment resembles the user's taste than the segments watched.

    A user's taste is estimated from content only: the mean feature of all segments the user
    watched before leaving. For each view skipped after >= 1 fully watched segment, compare the
    exit segment's similarity to that taste with the watched segments' mean similarity.
    Returns the fraction of such views where the exit segment is the less similar one.
    """
    users, vids = log["user_id"].to_numpy(), log["video_id"].to_numpy()
    exits = exit_slot(log["play_time_ms"].to_numpy(), log["duration_ms"].to_numpy())
    n = n_segments(log["duration_ms"].to_numpy())
    s = int(n.max())
    feats, mask = store.video_matrix(vids, n, s)  # (V, S, D)
    slots = np.arange(s)[None, :]
    watched = mask & (slots < exits[:, None])  # fully watched segments
    taste = np.zeros((users.max() + 1, store.dim))
    np.add.at(taste, users, (feats * watched[..., None]).sum(1))
    taste /= np.linalg.norm(taste, axis=1, keepdims=True) + 1e-9
    sim = np.einsum("vsd,vd->vs", feats, taste[users])  # (V, S)
    rows = np.flatnonzero((exits < n) & (exits >= 1))
    at_exit = sim[rows, exits[rows]]
    before = (sim[rows] * watched[rows]).sum(1) / watched[rows].sum(1)
    return float((at_exit < before).mean())


def test_exits_depend_on_content(tmp_path: Path) -> None:
    """Users leave at segments unlike their taste; with content_weight=0 they do not."""
    sizes = {**SIZES, "n_views": 20_000}
    log, sp = generate(**sizes, seed=0, out_dir=tmp_path / "content")
    ctrl, sc = generate(**sizes, seed=0, out_dir=tmp_path / "control", content_weight=0.0)
    with_content = _exit_vs_watched_similarity(log, FeatureStore.open(sp))
    control = _exit_vs_watched_similarity(ctrl, FeatureStore.open(sc))
    assert with_content > 0.7, with_content
    assert abs(control - 0.5) < 0.1, control


def test_cli_synth(tmp_path: Path, capsys) -> None:
    """`segint features synth` writes the log and the store; a second run refuses to overwrite."""
    argv = ["features", "synth", "--out", str(tmp_path), "--users", "5", "--videos", "20"]
    argv += ["--views", "100", "--dim", "4"]
    assert main(argv) == 0
    assert "wrote 100 views" in capsys.readouterr().out
    assert FeatureStore.open(tmp_path / "features").dim == 4
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
