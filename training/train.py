"""The training loop: AdamW, gradient clipping, scheduled validation, early stopping.

`train` takes a loaded table and its split (0 train, 1 valid; other rows only serve as
history) and writes a run directory (`training.checkpoint`). Every ``optim.eval_every`` steps,
and after the last step, it scores the validation rows and appends a line to
``metrics.jsonl``; the best validation NDCG@5 (``optim.valid_protocol``) so far is saved as
``model.pt``, and training stops after ``optim.patience`` validations without improvement.

Entry point: ``segint train ...`` (segint/commands/train.py; this library never imports the
CLI), and ``torchrun --nproc_per_node K -m segint.cli train ...``: each process trains on
its 1/K share of every epoch (DistributedSampler) through DistributedDataParallel (gloo on
CPU, NCCL on GPU); rank 0 alone validates and writes, and tells the others when to stop.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from model.config import ModelConfig
from model.loss import distill_ce
from model.network import SegmentInterestModel
from segint.errors import DataError, SegintError
from segint.splits import TRAIN, VALID, history_index
from segint.vocab import Vocab
from training import checkpoint
from training.config import TrainConfig
from training.data import Batch, InteractionDataset, build_vocabs, open_content_store
from training.ema import WeightAverage
from training.folds import count_folds, fold_counts
from training.inference import evaluate_dataset
from training.side import USER_COLUMNS, VIDEO_COLUMNS, read_side_table, side_codes
from training.wrapper import SegmentInterestTrain

log = logging.getLogger(__name__)
VALID_METRIC = "NDCG@5"


@dataclass(frozen=True)
class TrainResult:
    best_step: int  # step of the saved checkpoint
    best_metric: float  # its validation NDCG@5 under optim.valid_protocol
    steps: int  # optimizer steps taken
    epochs: float  # passes over the training rows
    stopped_early: bool
    elapsed_s: float
    train_rows: int
    valid_rows: int


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` = CUDA when available, else CPU; under torchrun each process takes its GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SegintError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SegintError("--device cuda asked for, but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = select_device(device_name, info.local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Decay matrices and embedding tables only: decaying biases, LayerNorm gains and the
    # per-slot position bias would pull them toward zero for no regularisation benefit.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


def _json_safe(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {
        p: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for p, m in metrics.items()
    }


class _Validator:
    """Rank 0's bookkeeping: validate, append metrics, keep the best checkpoint."""

    def __init__(
        self,
        model: torch.nn.Module,
        data: InteractionDataset,
        cfg: TrainConfig,
        out: Path,
        device: torch.device,
    ) -> None:
        self.model, self.data, self.cfg, self.out, self.device = model, data, cfg, out, device
        self.best = -math.inf
        self.best_step = 0
        self.since_best = 0
        self.start = time.perf_counter()

    def __call__(self, step: int, epoch: float, train_loss: float) -> bool:
        """Validate at ``step``; returns True when patience has run out."""
        metrics = evaluate_dataset(
            self.model,
            self.data,
            self.cfg.optim.eval_batch_size,
            self.device,
            seed=self.cfg.optim.seed,
        )
        value = metrics[self.cfg.optim.valid_protocol][VALID_METRIC]
        comparable = value if math.isfinite(value) else -math.inf
        if self.best_step == 0 or comparable > self.best:
            self.best, self.best_step, self.since_best = comparable, step, 0
            checkpoint.save_weights(self.model, self.out)
        else:
            self.since_best += 1
        line = {
            "step": step,
            "epoch": round(epoch, 4),
            "train_loss": train_loss if math.isfinite(train_loss) else None,
            "valid": _json_safe(metrics),
            "best_step": self.best_step,
            "elapsed_s": round(time.perf_counter() - self.start, 2),
        }
        with (self.out / checkpoint.METRICS_FILE).open("a") as f:
            f.write(json.dumps(line) + "\n")
        self.model.train()
        return self.since_best >= self.cfg.optim.patience


def _stop_everywhere(stop: bool, info: Dist, device: torch.device) -> bool:
    """Rank 0's stop decision, broadcast so every process leaves the loop at the same step."""
    if info.world == 1:
        return stop
    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs before the model exists: vocabularies, config, datasets."""

    users: Vocab
    videos: Vocab
    model_cfg: ModelConfig
    train: InteractionDataset
    valid: InteractionDataset
    video_side: npt.NDArray[np.int64] | None = None  # (n_videos, K) side codes, or None
    user_side: npt.NDArray[np.int64] | None = None  # (n_users, K) side codes, or None


def prepare(
    cfg: TrainConfig, table: pl.DataFrame, split: npt.NDArray[np.int8], need_valid: bool = True
) -> Prepared:
    """Vocabularies from the training rows, histories over the whole table, the datasets."""
    train_rows, valid_rows = np.flatnonzero(split == TRAIN), np.flatnonzero(split == VALID)
    if need_valid and len(valid_rows) == 0:
        raise DataError("no validation rows: the split left nothing to validate on")
    history = history_index(table, cfg.data.history_len)  # (n, H), any split
    users, videos = build_vocabs(table, train_rows)
    video_side, video_sizes = _side(cfg.features.video_table, "video_id", VIDEO_COLUMNS, videos)
    user_side, user_sizes = _side(cfg.features.user_table, "user_id", USER_COLUMNS, users)
    model_cfg = cfg.model_config(len(users), len(videos), video_sizes, user_sizes)
    # None for ID-only models; a content model without a (matching) store is an error here.
    store = open_content_store(cfg.features.store, model_cfg, cfg.features.l1_normalize)
    if store is not None:
        log.info(
            "content features from %s (%d videos, width %d)", store.path, len(store), store.dim
        )
    elif cfg.features.store:
        log.info("the model has no content modality; feature store %s unused", cfg.features.store)
    s_max = cfg.data.s_max
    folds = None  # count_mode "kfold": each training row's count fold (training.folds)
    if model_cfg.count_mode == "kfold" and model_cfg.exit_prior > 0:
        folds = count_folds(table, train_rows, model_cfg.count_folds, cfg.data.seed)
    teacher = None  # optim.distill: each training row's out-of-fold teacher (training.teacher)
    if cfg.optim.distill > 0:
        teacher = _teacher(cfg, table, train_rows, model_cfg.count_folds)
    return Prepared(
        users,
        videos,
        model_cfg,
        InteractionDataset(table, history, train_rows, users, videos, s_max, store, folds, teacher),
        InteractionDataset(table, history, valid_rows, users, videos, s_max, store),
        video_side,
        user_side,
    )


def _teacher(
    cfg: TrainConfig, table: pl.DataFrame, train_rows: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.float32]:
    """Out-of-fold ``hazard-gbdt`` exit distributions of the training rows (`training.teacher`)
    with the KuaiRand side tables where `segint baselines` finds them."""
    from training.side import kuairand_side_tables
    from training.teacher import oof_teacher

    side = kuairand_side_tables() if cfg.optim.distill_side_tables else (None, None)
    log.info("distillation: fitting the out-of-fold teacher (hazard-gbdt, %d folds)", k)
    return oof_teacher(
        table, train_rows, cfg.data.s_max, k, cfg.data.seed, torch.get_num_threads(), *side
    )  # fmt: skip


def _side(
    path: str, key: str, columns: tuple[str, ...], vocab: Vocab
) -> tuple[npt.NDArray[np.int64] | None, tuple[int, ...]]:
    """Side-feature codes of the vocabulary rows and table sizes; (None, ()) without a table."""
    if not path:
        return None, ()
    codes, sizes = side_codes(read_side_table(path, key, columns), key, vocab)
    covered = float((codes[1:] > 0).any(axis=1).mean()) if len(vocab) > 1 else 0.0
    log.info("side table %s: %d features, %.1f%% of %ss covered", path, len(sizes),
             100 * covered, key[:-3])  # fmt: skip
    return codes, sizes


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Any,
    batch: Batch,
    grad_clip: float,
    distill: float = 0.0,
) -> torch.Tensor:
    """One optimizer step on one batch (already on the device); returns the detached loss.

    ``distill > 0`` and a batch with ``teacher``: the loss gains ``distill`` times the
    cross-entropy of the model's exit distribution under the teacher's (`model.loss.distill_ce`).

    ``net`` is the training view (`SegmentInterestTrain`, DDP-wrapped under torchrun); a bare
    `SegmentInterestModel` (bench/bench_training.py) is wrapped here.
    """
    if isinstance(net, SegmentInterestModel):
        net = SegmentInterestTrain(net)
    # Leave-one-out: the row's own exit is left out of the exit-count prior and the residual.
    logits = net(batch)  # (B, S)
    loss: torch.Tensor = loss_fn(logits, batch.exit_slot, batch.n_segments)
    if distill > 0 and batch.teacher is not None:
        loss = loss + distill * distill_ce(logits, batch.teacher, batch.n_segments)
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def train(
    cfg: TrainConfig,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    out_dir: str | Path,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train on the rows with ``split == 0``, validate on ``split == 1``, write ``out_dir``.

    Works alone or inside a torchrun job (the process group is joined and left here).
    """
    from model.loss import LOSSES

    info, dev = init_distributed(device)
    try:
        out = Path(out_dir)
        seed_everything(cfg.optim.seed)
        prep = prepare(cfg, table, split)
        model, net, loader = _build(cfg, prep, info, dev)
        if info.main:
            checkpoint.write_run_files(out, cfg, prep.model_cfg, prep.users, prep.videos)
            log.info(
                "training on %d rows (%d users, %d videos), validating on %d; %d parameters; device %s x%d",
                len(prep.train), len(prep.users) - 1, len(prep.videos) - 1, len(prep.valid),
                sum(p.numel() for p in model.parameters()), dev, info.world,
            )  # fmt: skip
        validator = _Validator(model, prep.valid, cfg, out, dev) if info.main else None
        result = _loop(cfg, net, loader, LOSSES[cfg.loss], validator, info, dev, progress)
        if cfg.optim.refit:
            _refit(cfg, table, split, out, result.best_step, info, dev, progress)
        elif cfg.optim.refresh_counts and prep.model_cfg.exit_prior > 0 and info.main:
            _refresh_counts(model, table, split, prep.videos, out, dev)
        if cfg.optim.video_trees > 0 and info.main:
            write_video_table(cfg, table, split, prep.videos, out)
        return result
    finally:
        if info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _build(
    cfg: TrainConfig, prep: Prepared, info: Dist, dev: torch.device
) -> tuple[SegmentInterestModel, torch.nn.Module, DataLoader[Any]]:
    """The model, the module to step (its training view `SegmentInterestTrain`, DDP-wrapped
    under torchrun) and the training loader."""
    mcfg = prep.model_cfg
    model = SegmentInterestModel(mcfg).to(dev)
    folds = None
    if mcfg.exit_prior > 0:  # exit counts of the training rows, identical on every rank
        t, rows = prep.train, prep.train.rows
        set_prior_counts(model, t.video_idx[rows], t.n_segments[rows], t.exit_slot[rows], dev)
        if t.folds is not None:  # count_mode "kfold": the same counts split by fold
            folds = fold_counts(
                t.video_idx[rows], t.n_segments[rows], t.exit_slot[rows], t.folds[rows],
                mcfg.count_folds, mcfg.n_videos, mcfg.s_max, dev,
            )  # fmt: skip
    if prep.video_side is not None or prep.user_side is not None:
        model.set_side_features(
            None if prep.video_side is None else torch.as_tensor(prep.video_side, device=dev),
            None if prep.user_side is None else torch.as_tensor(prep.user_side, device=dev),
        )
    sampler: Sampler[int]
    if info.world > 1:
        torch.manual_seed(cfg.optim.seed + 1 + info.rank)  # distinct dropout masks per rank
        # Some parameters get no gradient in some configurations (the last layer's user
        # stream, or the whole last layer with reference_last_layer_bug).
        net: torch.nn.Module = DistributedDataParallel(
            SegmentInterestTrain(model, folds),
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=True,
        )
        sampler = DistributedSampler(
            prep.train, info.world, info.rank, shuffle=True, seed=cfg.optim.seed
        )
    else:
        net = SegmentInterestTrain(model, folds)
        sampler = RandomSampler(prep.train, generator=torch.Generator().manual_seed(cfg.optim.seed))
    loader = DataLoader(
        prep.train, batch_size=cfg.optim.batch_size, sampler=sampler, collate_fn=prep.train.collate
    )
    return model, net, loader


def set_prior_counts(
    model: SegmentInterestModel,
    video_idx: npt.NDArray[np.int64],
    n_segments: npt.NDArray[np.int64],
    exits: npt.NDArray[np.int64],
    dev: torch.device | str = "cpu",
) -> None:
    """Fill an exit_prior model's count buffers from rows given as vocabulary video rows (0 =
    outside the vocabulary: counted toward its N only), segment counts and exit slots."""
    from segint.baselines import exit_counts

    mcfg = model.cfg
    counts = exit_counts(video_idx, exits, mcfg.n_videos, mcfg.s_max)
    n_table = None
    if mcfg.exit_prior_base == "n_segments":  # the same rows' exits per segment count N
        n_table = torch.as_tensor(
            exit_counts(n_segments, exits, mcfg.s_max + 1, mcfg.s_max),
            dtype=torch.float32,
            device=dev,
        )
    model.decoder.set_exit_counts(torch.as_tensor(counts, dtype=torch.float32, device=dev), n_table)


def table_counts_args(
    table: pl.DataFrame, videos: Vocab
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """`set_prior_counts`'s row arrays of a table's rows."""
    return (
        videos.lookup(table["video_id"].to_numpy()),
        table["n_segments"].to_numpy().astype(np.int64),
        table["exit_slot"].to_numpy().astype(np.int64),
    )


def _refresh_counts(
    model: SegmentInterestModel,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    videos: Vocab,
    out: Path,
    dev: torch.device,
) -> None:
    """The chosen checkpoint with its exit counts refilled from training + validation rows."""
    fit = table.filter(pl.Series((split == TRAIN) | (split == VALID)))
    model.load_state_dict(torch.load(out / checkpoint.MODEL_FILE, map_location=dev))
    set_prior_counts(model, *table_counts_args(fit, videos), dev)
    checkpoint.save_weights(model, out)
    log.info("exit counts refreshed from %d training + validation rows", fit.height)
    with (out / checkpoint.METRICS_FILE).open("a") as f:
        f.write(json.dumps({"refresh_counts": {"rows": fit.height}}) + "\n")


def write_video_table(
    cfg: TrainConfig,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    videos: Vocab,
    out: str | Path,
) -> Path:
    """Fit the run's per-video exit table (`training.video_trees`, weight
    ``optim.video_trees``) and write it to ``out``."""
    from training.side import kuairand_video_table
    from training.video_trees import fit_video_table

    side = kuairand_video_table() if cfg.optim.distill_side_tables else None
    mask = (split == TRAIN) | (split == VALID)
    fit, valid = table.filter(pl.Series(mask)), split[mask] == VALID
    threads = torch.get_num_threads()
    video_table = fit_video_table(
        fit, valid, videos, cfg.data.s_max, cfg.optim.video_trees, cfg.data.seed, threads, side
    )
    path = video_table.write(out)
    log.info("wrote %s", path)
    return path


def _refit(
    cfg: TrainConfig,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    out: Path,
    steps: int,
    info: Dist,
    dev: torch.device,
    progress: bool,
) -> None:
    """Retrain from scratch on training + validation rows for ``steps`` steps (the early-stopped
    count) and replace the run's model and vocabularies; the validation history stays."""
    from model.loss import LOSSES

    if steps < 1:
        log.warning("refit skipped: no validated step to reproduce")
        return
    merged = np.where(split == VALID, TRAIN, split).astype(np.int8)
    seed_everything(cfg.optim.seed)
    prep = prepare(cfg, table, merged, need_valid=False)
    model, net, loader = _build(cfg, prep, info, dev)
    if info.main:
        log.info("refit on %d rows for %d steps", len(prep.train), steps)
    _loop(cfg, net, loader, LOSSES[cfg.loss], None, info, dev, progress, max_steps=steps)
    if info.main:
        checkpoint.write_run_files(
            out, cfg, prep.model_cfg, prep.users, prep.videos, new_metrics=False
        )
        checkpoint.save_weights(model, out)
        with (out / checkpoint.METRICS_FILE).open("a") as f:
            f.write(json.dumps({"refit": {"rows": len(prep.train), "steps": steps}}) + "\n")


def _loop(
    cfg: TrainConfig,
    net: torch.nn.Module,
    loader: DataLoader[Any],
    loss_fn: Any,
    validator: _Validator | None,
    info: Dist,
    dev: torch.device,
    progress: bool,
    max_steps: int | None = None,
) -> TrainResult:
    o = cfg.optim
    optimizer = make_optimizer(net, cfg)
    total = o.max_epochs * len(loader) if max_steps is None else max_steps
    start = time.perf_counter()
    step, loss_sum, loss_rows, stop = 0, 0.0, 0, False
    bar = tqdm(
        total=total,
        desc="train",
        unit="step",
        disable=not (progress and info.main),
        file=sys.stderr,
    )
    ema = WeightAverage(net, o.ema) if o.ema > 0 else None
    net.train()
    for epoch in range(o.max_epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            batch = batch.to(dev)
            loss = train_step(net, optimizer, loss_fn, batch, o.grad_clip, o.distill)
            if ema is not None:
                ema.update()
            step += 1
            loss_sum += float(loss) * len(batch)
            loss_rows += len(batch)
            bar.update(1)
            if max_steps is not None and step >= max_steps:
                stop = True
                break
            if step % o.eval_every == 0 or step == total:
                train_loss = loss_sum / max(loss_rows, 1)
                loss_sum, loss_rows = 0.0, 0
                if validator is not None:
                    with ema.swapped() if ema is not None else nullcontext():
                        stop = validator(step, step / len(loader), train_loss)
                    bar.set_postfix(loss=f"{train_loss:.4f}", best=f"{validator.best:.4f}")
                stop = _stop_everywhere(stop, info, dev)
                if stop:
                    break
        if stop:
            break
    bar.close()
    if ema is not None and validator is None:  # a refit ships the averaged weights
        ema.copy_to_model()
    elapsed = time.perf_counter() - start
    best_step = validator.best_step if validator else 0
    best = validator.best if validator else math.nan
    if info.main and validator is None:  # a refit: no validation rows to report on
        log.info("trained %d steps without validation; %.1f s", step, elapsed)
    elif info.main:
        log.info(
            "best validation %s (%s) %.4f at step %d of %d; %.1f s",
            VALID_METRIC, o.valid_protocol, best, best_step, step, elapsed,
        )  # fmt: skip
    return TrainResult(
        best_step=best_step,
        best_metric=best,
        steps=step,
        epochs=step / max(len(loader), 1),
        stopped_early=stop,
        elapsed_s=elapsed,
        train_rows=len(loader.dataset),  # type: ignore[arg-type]
        valid_rows=len(validator.data) if validator else 0,
    )
