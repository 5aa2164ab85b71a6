"""Distillation (``optim.distill``): the teacher loss, the out-of-fold teacher and the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from model.loss import distill_ce
from segint.cli import main
from segint.errors import SegintError
from segint.splits import TRAIN, assign_split
from tests.training.conftest import TINY
from training.checkpoint import load_run_config
from training.config import load_config
from training.folds import count_folds
from training.teacher import oof_teacher
from training.train import prepare, train


def test_distill_ce_by_hand() -> None:
    """-sum_j t_j log softmax(-z)_j over the real outcomes 0..N, the teacher renormalised
    over them; the mean over rows."""
    z = torch.tensor([[0.0, 1.0, 2.0, 9.0], [0.5, -0.5, 0.0, 1.0]])
    n = torch.tensor([2, 3])  # row 0: outcomes 0..2; row 1 (N = S - 1): outcomes 0..3
    t = torch.tensor([[0.2, 0.2, 0.4, 0.2], [0.1, 0.2, 0.3, 0.4]])
    got = distill_ce(z, t, n)
    p0 = torch.softmax(-z[0, :3], 0)
    row0 = -(torch.tensor([0.25, 0.25, 0.5]) * p0.log()).sum()  # slot 3 impossible: dropped
    row1 = -(t[1] * torch.softmax(-z[1], 0).log()).sum()
    torch.testing.assert_close(got, (row0 + row1) / 2)


def test_distill_ce_is_smallest_at_the_teacher() -> None:
    """The gradient vanishes where the model's distribution equals the teacher's."""
    t = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    z = (-t[:, :3].log()).clone()
    z = torch.cat([z, torch.tensor([[1e4]])], 1).requires_grad_(True)
    distill_ce(z, t, torch.tensor([2])).backward()
    assert z.grad is not None
    torch.testing.assert_close(z.grad[0, :3], torch.zeros(3), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="teacher"):
        distill_ce(z, t[:, :3], torch.tensor([2]))


def _relabel(table: pl.DataFrame, row: int) -> pl.DataFrame:
    """The table with row ``row`` watched to a different slot (exit and play time)."""
    exit_slot = table["exit_slot"].to_numpy().copy()
    play = table["play_time_ms"].to_numpy().copy()
    n = int(table["n_segments"][row])
    exit_slot[row] = (int(exit_slot[row]) + 1 + n // 2) % (n + 1)
    play[row] = 5_000 * int(exit_slot[row]) + 1
    return table.with_columns(pl.Series("exit_slot", exit_slot), pl.Series("play_time_ms", play))


def test_no_training_row_teaches_itself(
    table: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training row's teacher is fitted without its fold: relabelling the row's own exit
    leaves its teacher distribution (and its fold's) bit-for-bit unchanged. The row is its
    user's last view: an earlier view's exit also enters the user-history features of the
    same user's later views, as it enters the model's history input (module docstring).
    Rows outside the training rows get NaN; a second call reads the cache."""
    monkeypatch.setenv("SEGINT_TEACHER_CACHE", str(tmp_path / "cache"))
    rows = np.arange(0, table.height - 20)
    s = int(table["n_segments"].max()) + 1
    first = oof_teacher(table, rows, s, k=3, seed=0)
    assert first.shape == (table.height, s)
    assert np.isnan(first[table.height - 20 :]).all()
    assert np.isfinite(first[rows]).all()
    n = table["n_segments"].to_numpy()
    real = np.arange(s)[None, :] <= n[rows, None]
    assert (first[rows][~real] == 0).all()  # no mass on impossible slots
    np.testing.assert_allclose(first[rows].sum(1), 1.0, atol=1e-5)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    np.testing.assert_array_equal(oof_teacher(table, rows, s, k=3, seed=0), first)
    folds = count_folds(table, rows, 3, 0)
    last = (
        table.with_row_index("r")
        .filter(pl.col("r") < len(rows))
        .sort("time_ms")
        .group_by("user_id")
        .agg(pl.col("r").last())["r"]
        .to_numpy()
    )
    users = table["user_id"].to_numpy()
    later = [
        r
        for r in last
        if (table["time_ms"].to_numpy()[users == users[r]] > table["time_ms"][int(r)]).any()
    ]
    assert len(later) < len(last)  # most users' last training view is their last view
    for row in [int(r) for r in last if r not in later][:2]:
        again = oof_teacher(_relabel(table, row), rows, s, k=3, seed=0)
        np.testing.assert_array_equal(again[row], first[row])
        same_fold = rows[folds[rows] == folds[row]]
        np.testing.assert_array_equal(again[same_fold], first[same_fold])


def test_training_with_a_teacher(
    table: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """optim.distill > 0: the training batches carry each row's teacher distribution and the
    loop trains with it; validation batches carry none."""
    monkeypatch.setenv("SEGINT_TEACHER_CACHE", str(tmp_path / "cache"))
    cfg = load_config(TINY, ["optim.distill=1.0", "optim.max_epochs=1"])
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    prep = prepare(cfg, table, split)
    batch = prep.train.collate([prep.train[i] for i in range(4)])
    assert batch.teacher is not None and batch.teacher.shape == (4, cfg.data.s_max)
    np.testing.assert_allclose(batch.teacher.sum(1).numpy(), 1.0, atol=1e-5)
    assert prep.valid.teacher is None
    rows = np.flatnonzero(split == TRAIN)
    assert np.isfinite(prep.train.teacher[rows]).all()  # type: ignore[index]
    result = train(cfg, table, split, tmp_path / "run", progress=False)
    assert result.best_step > 0
    with pytest.raises(SegintError, match="optim.distill"):
        load_config(TINY, ["optim.distill=-1"])


def test_side_tables_key_the_cache_and_only_kuairand_logs_use_them(
    table: pl.DataFrame, log_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teacher fitted with a side table is cached apart from one without; `segint train`
    on a log of another format than KuaiRand fits its teacher without KuaiRand's tables."""
    monkeypatch.setenv("SEGINT_TEACHER_CACHE", str(tmp_path / "cache"))
    rows = np.arange(table.height)
    s = int(table["n_segments"].max()) + 1
    videos = table["video_id"].unique().sort()
    side = pl.DataFrame({"video_id": videos, "video_type": (videos % 3).cast(pl.Utf8)})
    oof_teacher(table, rows, s, k=3, seed=0)
    oof_teacher(table, rows, s, k=3, seed=0, video_table=side)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    run = tmp_path / "run"
    args = ["--data", str(log_csv), "--format", "canonical", "--config", str(TINY)]
    sets = ["--set", "optim.distill=1.0", "--set", "optim.max_epochs=1"]
    assert main(["train", *args, *sets, "--out", str(run), "--no-progress"]) == 0
    cfg = load_run_config(run)
    assert cfg.optim.distill == 1.0 and cfg.optim.distill_side_tables is False
