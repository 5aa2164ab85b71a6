"""SegRec training loop and run directories.

Training follows the reference's CTR runner (section 7.5): Adam, lr 1e-3, batch 512, BCE on
the effective-view label, one validation pass per epoch (or every ``eval_every`` steps),
early stopping on validation AUC (patience in validations), the best validation's weights
kept (with ``ema``, those of a moving average of the weights). The interest logits are
inputs, never parameters: they come in precomputed (`segrec.interest`).

A run directory holds ``model.pt`` (state_dict of the best epoch), ``segrec.json`` (the
`SegRecConfig`, the effective-view label medians, the data source and split, the interest
model it used and the training options), ``vocab_users.npy``, ``vocab_videos.npy`` and
``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from segint.errors import SegintError
from segint.vocab import Vocab
from segrec.config import SegRecConfig
from segrec.data import SegRecInputs
from segrec.labels import EffectiveViewLabel
from segrec.metrics import ctr_metrics
from segrec.network import SegRecModel

log = logging.getLogger(__name__)
MODEL_FILE = "model.pt"
RUN_FILE = "segrec.json"
USERS_FILE = "vocab_users.npy"
VIDEOS_FILE = "vocab_videos.npy"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class TrainOptions:
    lr: float = 1e-3  # Adam learning rate (reference)
    weight_decay: float = 0.0  # Adam L2 (reference: 0)
    batch_size: int = 512  # rows per step (reference)
    eval_batch_size: int = 4096
    max_epochs: int = 20  # passes over the training rows at most (reference: 200)
    patience: int = 3  # epochs without a better validation AUC before stopping (reference: 10)
    seed: int = 0  # initialisation and shuffling seed
    # Exponential moving average of the weights, decay per step (0 = off): the average is what
    # is validated, early-stopped and saved. Warm-up ``min(ema, (1 + t) / (10 + t))`` at step t.
    ema: float = 0.0
    emb_weight_decay: float = 0.0  # Adam L2 on the id-embedding tables only
    # Validate every this many steps (patience then counts validations); 0 = once per epoch.
    eval_every: int = 0
    # Start the linear term of the dense interest features (WideDeep's wide part, DIN's
    # dense_linear) at zero: the model starts as the video-level one plus nothing.
    zero_init_dense: bool = False

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.weight_decay < 0 or self.emb_weight_decay < 0:
            raise SegintError(
                f"need lr > 0 and weight decays >= 0, got {self.lr}, {self.weight_decay}, "
                f"{self.emb_weight_decay}"
            )
        if self.eval_every < 0:
            raise SegintError(f"eval-every must be >= 0, got {self.eval_every}")
        if not 0.0 <= self.ema < 1.0:
            raise SegintError(f"ema must be in [0, 1), got {self.ema}")
        for name in ("batch_size", "eval_batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise SegintError(
                    f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_auc: float  # validation AUC of the saved weights
    epochs: int
    elapsed_s: float
    train_rows: int
    valid_rows: int


@torch.no_grad()
def predict(
    model: SegRecModel, inputs: SegRecInputs, rows: npt.ArrayLike, batch_size: int = 4096
) -> npt.NDArray[np.float64]:
    """(len(rows),) predicted effective-view probabilities; leaves the model in eval mode."""
    model.eval()
    idx = np.asarray(rows, dtype=np.int64)
    out = [
        torch.sigmoid(model(**inputs.batch(idx[i : i + batch_size]))).double().numpy()
        for i in range(0, len(idx), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def fit_platt(labels: npt.ArrayLike, probs: npt.ArrayLike) -> tuple[float, float]:
    """(a, b) minimising the log loss of ``sigmoid(a * logit(p) + b)`` on the given rows.

    Newton's method on the two parameters (convex); called with *validation* rows. The scale
    is kept > 0 (a non-positive fit would reverse the ranking) and the result is rounded to
    1e-6 so that the config stays readable. Returns (1, 0) when the rows hold one class.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    if len(y) == 0 or y.min() == y.max():
        return 1.0, 0.0
    x = np.stack([np.log(p / (1 - p)), np.ones_like(p)], axis=1)  # (n, 2)
    w = np.array([1.0, 0.0])
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (q - y)
        hess = (x * (q * (1 - q))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-10:
            break
    a = max(float(w[0]), 1e-3)
    return round(a, 6), round(float(w[1]), 6)


def train_segrec(
    cfg: SegRecConfig,
    inputs: SegRecInputs,
    train_rows: npt.ArrayLike,
    valid_rows: npt.ArrayLike,
    opts: TrainOptions,
    out: str | Path,
    progress: bool = True,
) -> tuple[SegRecModel, TrainResult]:
    """Train, keep the best validation-AUC weights in ``out/model.pt``; returns them loaded."""
    tr = np.asarray(train_rows, dtype=np.int64)
    va = np.asarray(valid_rows, dtype=np.int64)
    if len(tr) == 0 or len(va) == 0:
        raise SegintError(f"need training and validation rows, got {len(tr)} and {len(va)}")
    out = Path(out)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    model = SegRecModel(cfg)
    if opts.zero_init_dense:
        zero_dense_linear(model)
    optim = torch.optim.Adam(param_groups(model, opts), lr=opts.lr)
    # the weights that are validated and kept: the moving average, or the model itself
    scored = copy.deepcopy(model) if opts.ema > 0 else model
    step = 0
    loss_fn = torch.nn.BCEWithLogitsLoss()
    metrics_path = out / METRICS_FILE
    metrics_path.write_text("")
    best_auc, best_epoch, stale = -1.0, 0, 0
    start = time.perf_counter()
    log.info(
        "SegRec %s/%s: %d training rows (positive rate %.3f), %d validation rows, %d parameters",
        cfg.backbone,
        cfg.mode,
        len(tr),
        float(inputs.label[tr].mean()),
        len(va),
        sum(p.numel() for p in model.parameters()),
    )
    epoch, stop = 0, False

    def validate(train_loss: float) -> bool:
        """Score the kept weights on the validation rows; True when patience has run out."""
        nonlocal best_auc, best_epoch, stale
        valid = ctr_metrics(inputs.label[va], predict(scored, inputs, va, opts.eval_batch_size))
        line = {"epoch": epoch, "step": step, "train_loss": train_loss, **valid}
        with metrics_path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        log.info(
            "epoch %d step %d: train loss %.4f, valid %s", epoch, step, train_loss, _fmt(valid)
        )
        model.train()  # predict() left it in eval mode
        if valid["AUC"] > best_auc:  # NaN (one-class validation) never improves
            best_auc, best_epoch, stale = valid["AUC"], epoch, 0
            _save_weights(scored, out)
            return False
        stale += 1
        return stale >= opts.patience

    for epoch in range(1, opts.max_epochs + 1):
        model.train()
        order = rng.permutation(tr)
        total, steps = 0.0, 0
        batches = range(0, len(order), opts.batch_size)
        for i in tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False):
            rows = order[i : i + opts.batch_size]
            loss = loss_fn(model(**inputs.batch(rows)), inputs.labels(rows))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if scored is not model:
                update_ema(scored, model, min(opts.ema, (1 + step) / (10 + step)))
            step += 1
            total, steps = total + loss.item(), steps + 1
            if opts.eval_every and step % opts.eval_every == 0 and validate(total / steps):
                stop = True
                break
        if stop or (not opts.eval_every and validate(total / max(steps, 1))):
            break
    if best_epoch == 0:  # validation AUC undefined throughout: keep the last weights
        _save_weights(scored, out)
    model.load_state_dict(torch.load(out / MODEL_FILE, weights_only=True))
    model.eval()
    result = TrainResult(best_epoch, best_auc, epoch, time.perf_counter() - start, len(tr), len(va))
    return model, result


def param_groups(model: torch.nn.Module, opts: TrainOptions) -> list[dict[str, Any]]:
    """Adam parameter groups: every ``nn.Embedding`` table (the ids' embeddings, WideDeep's
    per-id wide weights, the length and slot embeddings) with ``opts.emb_weight_decay``, every
    other parameter with ``opts.weight_decay``."""
    emb = {
        id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)
    }  # ids of the embedding tables
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if id(p) in emb], "weight_decay": opts.emb_weight_decay},
        {"params": [p for p in params if id(p) not in emb], "weight_decay": opts.weight_decay},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def zero_dense_linear(model: SegRecModel) -> None:
    """Zero the weights of the dense features' linear term (WideDeep ``wide_dense``, DIN
    ``dense_linear``), where the model has one."""
    for name in ("wide_dense", "dense_linear"):
        layer = getattr(model.backbone, name, None)
        if isinstance(layer, torch.nn.Linear):
            layer.weight.zero_()


@torch.no_grad()
def update_ema(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` on the parameters; buffers (Dice's
    running statistics, themselves averages) are copied."""
    for a, p in zip(average.parameters(), model.parameters(), strict=True):
        a.lerp_(p, 1.0 - decay)
    for buf, src in zip(average.buffers(), model.buffers(), strict=True):
        buf.copy_(src)


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in m.items())


def _save_weights(model: torch.nn.Module, out: Path) -> None:
    tmp = out / (MODEL_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out / MODEL_FILE)  # atomic: never a half-written checkpoint


def write_run(
    out: str | Path,
    cfg: SegRecConfig,
    label: EffectiveViewLabel,
    users: Vocab,
    videos: Vocab,
    source: dict[str, Any],
    opts: TrainOptions,
    interest_model: str | None,
    crossfit: dict[str, Any] | None = None,
) -> None:
    """Everything but the weights, written before training starts.

    ``crossfit`` records how the training rows' interest inputs were cross-fitted (folds,
    fold epochs, cache folder); None when they came from the interest model itself.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "model": cfg.to_dict(),
        "label": label.to_dict(),
        "source": source,
        "interest_model": interest_model,
        "crossfit": crossfit,
        "train": asdict(opts),
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    users.save(out / USERS_FILE)
    videos.save(out / VIDEOS_FILE)


@dataclass(frozen=True)
class SegRecRun:
    """A loaded run directory."""

    path: Path
    model: SegRecModel
    cfg: SegRecConfig
    label: EffectiveViewLabel
    users: Vocab
    videos: Vocab
    source: dict[str, Any]
    interest_model: str | None
    train: dict[str, Any]
    crossfit: dict[str, Any] | None = None  # how training rows' interest inputs were cross-fitted
    valid_auc: float | None = None  # validation AUC of the saved weights (metrics.jsonl)


def load_run(run_dir: str | Path) -> SegRecRun:
    """Rebuild a trained SegRec model (eval mode) with its label and vocabularies."""
    path = Path(run_dir)
    for name in (RUN_FILE, MODEL_FILE, USERS_FILE, VIDEOS_FILE):
        if not (path / name).is_file():
            raise SegintError(f"{path}: not a SegRec run (no {name})")
    try:
        raw = json.loads((path / RUN_FILE).read_text())
        cfg = SegRecConfig.from_dict(raw["model"])
        label = EffectiveViewLabel.from_dict(raw["label"])
    except (ValueError, KeyError, TypeError) as e:
        raise SegintError(f"{path / RUN_FILE}: malformed ({e})") from None
    model = SegRecModel(cfg)
    try:
        model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
    except RuntimeError as e:
        raise SegintError(
            f"{path / MODEL_FILE}: does not fit the config ({str(e).splitlines()[0]})"
        ) from None
    users, videos = Vocab.load(path / USERS_FILE), Vocab.load(path / VIDEOS_FILE)
    return SegRecRun(
        path,
        model.eval(),
        cfg,
        label,
        users,
        videos,
        raw["source"],
        raw.get("interest_model"),
        raw["train"],
        raw.get("crossfit"),
        best_valid_auc(path),
    )


def best_valid_auc(run_dir: str | Path) -> float | None:
    """The best validation AUC in a run's ``metrics.jsonl`` (the saved epoch's); None if none."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    aucs = []
    for line in path.read_text().splitlines():
        try:
            value = float(json.loads(line)["AUC"])
        except (ValueError, KeyError, TypeError):
            continue
        if np.isfinite(value):
            aucs.append(value)
    return max(aucs) if aucs else None
