"""count_mode "kfold": a training row is scored with the exit counts of the other folds only,
so neither its own exit nor the leave-one-out bias tied to it reaches its prior or residual."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from model import SegmentInterestModel
from segint.splits import TRAIN, assign_split
from tests.model.model_testing import B, S, make_batch, tiny_config
from tests.training.conftest import TINY
from training.config import load_config
from training.data import Batch
from training.folds import count_folds, fold_counts
from training.train import Dist, _build, prepare, set_prior_counts
from training.wrapper import SegmentInterestTrain

K = 3
KFOLD = {
    "exit_prior": 2.0,
    "exit_prior_base": "n_segments",
    "count_mode": "kfold",
    "count_folds": K,
    "dropout": 0.0,
}


def test_count_folds_are_a_stable_function_of_the_row(table: pl.DataFrame) -> None:
    """Every given row gets a fold in 0..K-1, every fold is used, other rows get -1, and a
    row's fold does not move when other rows are dropped from the table."""
    rows = np.arange(0, table.height, 2)
    folds = count_folds(table, rows, K, seed=0)
    assert (folds[1::2] == -1).all()
    assert set(folds[rows]) == set(range(K))
    sub = table[rows.tolist()]
    np.testing.assert_array_equal(count_folds(sub, np.arange(sub.height), K, seed=0), folds[rows])
    assert not np.array_equal(count_folds(table, rows, K, seed=1), folds)
    with pytest.raises(ValueError, match="k >= 2"):
        count_folds(table, rows, 1)


def test_fold_counts_sum_to_the_served_counts(table: pl.DataFrame) -> None:
    """`_build` with kfold: the per-fold counts the wrapper holds add up to the model's full
    count buffers (those it is exported and served with), and the batches carry folds."""
    cfg = load_config(
        TINY,
        ["model.count_mode=kfold", f"model.count_folds={K}", "model.exit_prior_base=n_segments"],
    )
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    prep = prepare(cfg, table, split)
    model, net, loader = _build(cfg, prep, Dist(), torch.device("cpu"))
    assert isinstance(net, SegmentInterestTrain) and net.fold_counts is not None
    fc = net.fold_counts
    assert fc.video.shape == (K, *model.decoder.exit_counts.shape)
    torch.testing.assert_close(fc.video.sum(0), model.decoder.exit_counts)
    torch.testing.assert_close(fc.n.sum(0), model.decoder.n_exit_counts)
    assert float(fc.video.sum()) > 0 and (fc.video.sum((1, 2)) > 0).all()
    folds = prep.train.folds
    assert folds is not None
    assert (folds[split == TRAIN] >= 0).all() and (folds[split != TRAIN] == -1).all()
    batch = next(iter(loader))
    assert batch.fold is not None and batch.hist_fold is not None
    assert batch.hist_fold.shape == batch.hist_mask.shape
    assert (batch.hist_fold[~batch.hist_mask] == -1).all()
    assert "fold" not in batch.inputs() and "hist_fold" not in batch.inputs()
    # The served state has no trace of the folds.
    assert not any("fold" in k for k in model.state_dict())


def _fitting_rows(batch: dict[str, torch.Tensor], exits: torch.Tensor, folds: torch.Tensor,
                  hist_folds: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The fitting rows of a synthetic batch: every target row and every real history view
    whose fold is >= 0, as (video, N, exit, fold) columns."""
    real = batch["hist_mask"] & (hist_folds >= 0)
    v = torch.cat([batch["video_ids"], batch["hist_video_ids"][real]])
    n = torch.cat([batch["n_segments"], batch["hist_n_segments"][real]])
    e = torch.cat([exits, batch["hist_exit_slots"][real]])
    f = torch.cat([folds, hist_folds[real]])
    return v, n, e, f


def _synthetic(cfg_overrides: dict, seed: int):
    model = SegmentInterestModel(tiny_config(**KFOLD | cfg_overrides)).eval()
    batch = make_batch(model.cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    exits = (torch.rand(B, generator=g) * (batch["n_segments"] + 1)).long()
    folds = torch.randint(0, K, (B,), generator=g)
    hist_folds = torch.randint(-1, K, batch["hist_mask"].shape, generator=g)
    hist_folds[~batch["hist_mask"]] = -1
    v, n, e, f = _fitting_rows(batch, exits, folds, hist_folds)
    set_prior_counts(model, v.numpy(), n.numpy(), e.numpy())
    fc = fold_counts(v.numpy(), n.numpy(), e.numpy(), f.numpy(), K, model.cfg.n_videos, S)
    full = Batch(**batch, exit_slot=exits, fold=folds, hist_fold=hist_folds)
    return model, fc, batch, full, (v, n, e, f)


def test_kfold_prior_is_the_prior_of_the_other_folds() -> None:
    """Row b of fold k is scored by the wrapper exactly as the plain model scores it when its
    counts (per video and per N) are those of the fitting rows outside fold k."""
    model, fc, batch, full, (v, n, e, f) = _synthetic({}, seed=4)
    assert (batch["video_ids"] > 0).any()
    with torch.no_grad():
        got = SegmentInterestTrain(model, fc)(full)
        served = model(**batch)
        assert not torch.allclose(got, served)  # the test can tell the folds from the full counts
        for k in range(K):
            keep = f != k
            set_prior_counts(model, v[keep].numpy(), n[keep].numpy(), e[keep].numpy())
            want = model(**batch)
            rows = full.fold == k
            assert rows.any()
            torch.testing.assert_close(got[rows], want[rows])


def test_kfold_residual_uses_the_other_folds_and_leaves_history_views_out_once() -> None:
    """With the user tilt: row b's residual is that of the counts outside its fold k; a history
    view outside fold k leaves its own exit out (as served), one in fold k is already out and
    is not subtracted a second time. Reference, view by view: the served residual of that one
    view with counts = the rows outside fold k, plus the view itself when it is in fold k
    (the served residual then subtracts it), and the global profile of the rows outside k."""
    model, fc, batch, full, (v, n, e, f) = _synthetic({"user_tilt": 0.5}, seed=5)
    shrink = model.cfg.user_tilt_shrink
    h = (batch["hist_video_ids"], batch["hist_exit_slots"], batch["hist_n_segments"],
         batch["hist_mask"])  # fmt: skip
    with torch.no_grad():
        got = model.user_residual(*h, folds=(fc, full.fold, full.hist_fold))
        assert got is not None
        in_fold_views = 0
        for b in range(B):
            k = int(full.fold[b])
            keep = f != k
            total = 0.0
            views = batch["hist_mask"][b].nonzero()[:, 0]
            for j in views.tolist():
                own = int(full.hist_fold[b, j]) == k
                in_fold_views += own
                extra = slice(j, j + 1) if own else slice(0, 0)
                rv = torch.cat([v[keep], batch["hist_video_ids"][b, extra]])
                rn = torch.cat([n[keep], batch["hist_n_segments"][b, extra]])
                re_ = torch.cat([e[keep], batch["hist_exit_slots"][b, extra]])
                set_prior_counts(model, rv.numpy(), rn.numpy(), re_.numpy())
                model.decoder.global_exit.copy_(fc.glob[k])  # of the rows outside fold k
                one = model.user_residual(*(x[b : b + 1, j : j + 1] for x in h))
                assert one is not None
                total += float(one) * (1 + shrink)  # that view's residual
            want = torch.tensor([total / (len(views) + shrink)])
            torch.testing.assert_close(got[b : b + 1], want)
        assert in_fold_views > 0
        assert (got != 0).any()


def test_own_exit_never_enters_its_own_prior(table: pl.DataFrame) -> None:
    """End to end through `prepare` and `_build` (kfold, user tilt): relabelling one training
    row's exit leaves that row's training logits bit for bit unchanged, while the served
    model's logits for it (full counts) move; relabelling a row of another fold of the same
    video moves them."""
    cfg = load_config(TINY, [
        "model.count_mode=kfold", f"model.count_folds={K}", "model.exit_prior_base=n_segments",
        "model.user_tilt=0.5", "model.id_dropout=0.0",
    ])  # fmt: skip
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    folds = count_folds(table, np.flatnonzero(split == TRAIN), K, cfg.data.seed)
    vid = table["video_id"].to_numpy()
    train = np.flatnonzero(split == TRAIN)
    # A training row whose video has a training row in another fold.
    r, other = next(
        (a, b) for a in train for b in train if vid[a] == vid[b] and folds[a] != folds[b]
    )

    def logits(t: pl.DataFrame, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        prep = prepare(cfg, t, split)
        model, net, _ = _build(cfg, prep, Dist(), torch.device("cpu"))
        i = int(np.flatnonzero(prep.train.rows == row)[0])
        batch = prep.train.collate([prep.train[i]])
        with torch.no_grad():
            return net.eval()(batch), model.eval()(**batch.inputs())

    def relabel(row: int) -> pl.DataFrame:
        exits = table["exit_slot"].to_numpy().copy()
        exits[row] = 0 if exits[row] > 0 else int(table["n_segments"][int(row)])
        return table.with_columns(pl.Series("exit_slot", exits))

    train0, served0 = logits(table, r)
    train1, served1 = logits(relabel(r), r)
    assert torch.equal(train1, train0)
    assert not torch.allclose(served1, served0)
    train2, _ = logits(relabel(other), r)
    assert not torch.allclose(train2, train0)


def test_kfold_needs_its_counts_and_folds() -> None:
    model = SegmentInterestModel(tiny_config(**KFOLD))
    with pytest.raises(ValueError, match="fold_counts"):
        SegmentInterestTrain(model)
    fc = fold_counts(*(np.zeros(0, dtype=np.int64) for _ in range(4)), K, model.cfg.n_videos, S)
    batch = make_batch(model.cfg)
    with pytest.raises(ValueError, match="no folds"):
        SegmentInterestTrain(model, fc)(Batch(**batch, exit_slot=batch["n_segments"]))
    with pytest.raises(ValueError, match="count_mode"):
        tiny_config(count_mode="oof")
    with pytest.raises(ValueError, match="count_folds"):
        tiny_config(count_folds=1)
