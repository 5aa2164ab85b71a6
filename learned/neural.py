"""What the two neural learned baselines (`din-slot`, `sasrec`) share: rows, histories, the loop.

Shape legend: ``n`` table rows, ``B`` rows in a batch, ``H`` history views of a batch, ``S`` =
``s_max`` slots, ``d`` embedding width.

`prepare` lays the fitting and test rows out as one table in `segint.data.load_table`'s order,
exactly as `segint evaluate` does for the segment interest model, so that every row's history
is its user's strictly earlier views from any split (`segint.splits.history_index`), and builds
the user and video vocabularies from the *training* rows only (validation rows are not fitted
on; a video first seen there is "unknown", as a new upload would be). Rows become batches
through `training.data.InteractionDataset` and `collate`, the model's own input pipeline.

`fit_network` trains a network on the training rows only, evaluates it on the validation rows
after every epoch (strict NDCG@5 of the exit slot, the criterion `segint train` early-stops
on) and keeps the best epoch's weights; test rows are scored once, at the end, by that state.
A network maps a `training.data.Batch` to per-slot outputs ``(B, S)``; a `Head` turns them into
a loss and into ``(scores, exit_dist)`` in the convention of `segint.baselines`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from learned.base import LearnedInput
from segint.metrics import evaluate_scores
from segint.splits import history_index
from segint.vocab import UNKNOWN, Vocab
from training.data import Batch, InteractionDataset, collate

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SORT_KEYS = ["user_id", "time_ms", "video_id", "play_time_ms"]  # segint evaluate's row order
COLUMNS = ["user_id", "video_id", "time_ms", "play_time_ms", "n_segments", "exit_slot"]
CRITERION = "NDCG@5"  # validation metric (strict protocol) that picks the epoch


@dataclass(frozen=True)
class NeuralConfig:
    """Training settings shared by both networks (one check of weight decay on validation rows)."""

    emb_dim: int = 32  # d: every embedding's width
    history_len: int = 20  # H: previous views per row, as the segment interest model
    id_dropout: float = 0.3  # share of user/video ids shown as "unknown" in training
    lr: float = 3e-3  # AdamW learning rate
    weight_decay: float = 0.5  # AdamW decoupled; 0.5 vs 0.05: a tie on validation (docs)
    batch_size: int = 256
    eval_batch_size: int = 2048
    max_epochs: int = 8
    evals_per_epoch: int = 4  # validations per epoch (the sparse ids overfit within one)
    patience: int = 4  # validations without a better NDCG@5 before stopping (whole epochs)

    def __post_init__(self) -> None:
        names = ("emb_dim", "history_len", "batch_size", "eval_batch_size", "max_epochs")
        for name in (*names, "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")


@dataclass(frozen=True)
class Prepared:
    """Fitting and test rows as one table, with histories and training-row vocabularies."""

    table: pl.DataFrame  # all rows, sorted by SORT_KEYS
    history: IntArray  # (n, H) row indices of previous views, most recent first, -1 padded
    train_rows: IntArray  # table rows the network is fitted on
    valid_rows: IntArray  # table rows that pick the epoch
    test_rows: IntArray  # table rows of inp.test, in inp.test's order
    users: Vocab
    videos: Vocab


def prepare(inp: LearnedInput, history_len: int) -> Prepared:
    """One table of ``inp.fit`` and ``inp.test`` with histories and vocabularies (see module)."""
    valid = np.asarray(inp.valid, dtype=bool)
    if len(valid) != inp.fit.height:
        raise ValueError(f"valid has {len(valid)} entries, fit has {inp.fit.height} rows")
    if valid.all() or not valid.any():
        raise ValueError(
            f"need training and validation rows, got {int((~valid).sum())} and {int(valid.sum())}"
        )
    part = np.r_[np.where(valid, 1, 0), np.full(inp.test.height, 2)].astype(np.int8)
    order = np.r_[np.arange(inp.fit.height), np.arange(inp.test.height)].astype(np.int64)
    table = (
        pl.concat([inp.fit.select(COLUMNS), inp.test.select(COLUMNS)])
        .with_columns(_part=pl.Series(part), _pos=pl.Series(order))
        .sort(SORT_KEYS, maintain_order=True)
    )
    part_s, pos_s = table["_part"].to_numpy(), table["_pos"].to_numpy()
    test_rows = np.flatnonzero(part_s == 2)
    test_rows = test_rows[np.argsort(pos_s[test_rows], kind="stable")]  # back to inp.test order
    train_rows = np.flatnonzero(part_s == 0)
    table = table.drop("_part", "_pos")
    users = Vocab(table["user_id"].to_numpy()[train_rows])
    videos = Vocab(table["video_id"].to_numpy()[train_rows])
    return Prepared(
        table=table,
        history=history_index(table, history_len),
        train_rows=train_rows,
        valid_rows=np.flatnonzero(part_s == 1),
        test_rows=test_rows,
        users=users,
        videos=videos,
    )


class Head(Protocol):
    """How a network's per-slot outputs ``(B, S)`` become a loss and an exit distribution."""

    def loss(self, out: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor: ...

    def scores_and_dist(
        self, out: FloatArray, n_segments: IntArray
    ) -> tuple[FloatArray, FloatArray]: ...


def drop_ids(batch: Batch, p: float, gen: torch.Generator) -> Batch:
    """``batch`` with a share ``p`` of user, target and history video ids set to "unknown".

    Trains the unknown rows that cold users and videos get at test time and regularises the
    sparse id tables (users have ~4 views, videos ~10 in the shared log).
    """
    if p == 0.0:
        return batch

    def drop(ids: Tensor) -> Tensor:
        return torch.where(torch.rand(ids.shape, generator=gen) < p, UNKNOWN, ids)

    fields = {name: getattr(batch, name) for name in Batch.__dataclass_fields__}
    fields["user_ids"] = drop(batch.user_ids)
    fields["video_ids"] = drop(batch.video_ids)
    fields["hist_video_ids"] = drop(batch.hist_video_ids)
    return Batch(**fields)


def batches(
    data: InteractionDataset, batch_size: int, order: IntArray | None = None
) -> Iterator[Batch]:
    """Batches of ``data`` in ``order`` (dataset positions; default: as stored)."""
    idx = np.arange(len(data)) if order is None else order
    for start in range(0, len(idx), batch_size):
        yield collate([data[int(i)] for i in idx[start : start + batch_size]])


@torch.no_grad()
def predict(net: nn.Module, data: InteractionDataset, batch_size: int) -> FloatArray:
    """(rows, S) outputs of ``net`` in eval mode on every row of ``data``, in order."""
    net.eval()
    outs = [net(b).double().numpy() for b in batches(data, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, data.s_max))


def fit_network(
    name: str,
    make_net: Callable[[Prepared], nn.Module],
    head: Head,
    inp: LearnedInput,
    cfg: NeuralConfig,
) -> tuple[FloatArray, FloatArray, dict[str, Any]]:
    """Fit ``make_net(prepared)`` on the training rows, pick the epoch on validation rows,
    score the test rows. Returns ``(scores, exit_dist, settings)`` of the test rows."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, inp.threads))
    try:
        torch.manual_seed(inp.seed)
        gen = torch.Generator().manual_seed(inp.seed)
        rng = np.random.default_rng(inp.seed)
        prep = prepare(inp, cfg.history_len)

        def dataset(rows: IntArray) -> InteractionDataset:
            return InteractionDataset(
                prep.table, prep.history, rows, prep.users, prep.videos, inp.s_max
            )

        train, valid, test = (
            dataset(r) for r in (prep.train_rows, prep.valid_rows, prep.test_rows)
        )
        v_exit, v_nseg = valid.targets()
        net = make_net(prep)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = -(-len(train) // cfg.batch_size)  # per epoch
        checkpoints = set(np.linspace(0, steps, cfg.evals_per_epoch + 1).round().astype(int)[1:])
        best: tuple[float, float, dict[str, Tensor]] = (-np.inf, 0.0, net.state_dict())
        history: dict[str, float] = {}
        since_best = 0  # validations without a better value
        for epoch in range(cfg.max_epochs):
            if since_best >= cfg.patience:
                break
            net.train()
            order = rng.permutation(len(train))
            bar = tqdm(
                batches(train, cfg.batch_size, order),
                total=steps,
                desc=f"{name} epoch {epoch + 1}/{cfg.max_epochs}",
                leave=False,
            )
            for step, batch in enumerate(bar, start=1):
                batch = drop_ids(batch, cfg.id_dropout, gen)
                loss = head.loss(net(batch), batch.exit_slot, batch.n_segments)
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if step not in checkpoints:
                    continue
                at = round(epoch + step / steps, 3)  # epochs trained so far
                out = predict(net, valid, cfg.eval_batch_size)
                net.train()
                scores, dist = head.scores_and_dist(out, v_nseg)
                value = evaluate_scores(scores, dist, v_exit, v_nseg, "strict", inp.seed)
                history[str(at)] = round(float(value[CRITERION]), 5)
                log.info("%s epoch %.2f: validation %s %.4f", name, at, CRITERION, value[CRITERION])
                since_best += 1
                if value[CRITERION] > best[0]:
                    best, since_best = (value[CRITERION], at, copy.deepcopy(net.state_dict())), 0
                if since_best >= cfg.patience:
                    break
        net.load_state_dict(best[2])
        scores, dist = head.scores_and_dist(
            predict(net, test, cfg.eval_batch_size),
            prep.table["n_segments"].to_numpy()[prep.test_rows],
        )
    finally:
        torch.set_num_threads(threads)
    settings = {
        "best_epoch": best[1],
        "valid_NDCG@5_strict_by_epoch": history,  # key: epochs trained
        "criterion": f"checkpoint (every 1/{cfg.evals_per_epoch} epoch) with the best strict "
        f"{CRITERION} on the validation rows",
        "chosen_on": f"validation rows ({len(prep.valid_rows):,})",
        "fitted_on": f"training rows only ({len(prep.train_rows):,})",
        "hyper_parameters": "defaults (weight decay checked on temporal seed-0 validation rows): "
        + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items()),
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return scores, dist, settings
