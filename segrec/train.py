"""SegRec training loop and run directories.

Training follows the reference's CTR runner (section 7.5): Adam, lr 1e-3, batch 512, BCE on
the effective-view label, one validation pass per epoch, early stopping on validation AUC
(patience in epochs), the best epoch's weights kept. The interest logits are inputs, never
parameters: they come in precomputed (`segrec.interest`).

A run directory holds ``model.pt`` (state_dict of the best epoch), ``segrec.json`` (the
`SegRecConfig`, the effective-view label medians, the data source and split, the interest
model it used and the training options), ``vocab_users.npy``, ``vocab_videos.npy`` and
``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.weight_decay < 0:
            raise SegintError(
                f"need lr > 0 and weight decay >= 0, got {self.lr}, {self.weight_decay}"
            )
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
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
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
    epoch = 0
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
            total, steps = total + loss.item(), steps + 1
        valid = ctr_metrics(inputs.label[va], predict(model, inputs, va, opts.eval_batch_size))
        line = {"epoch": epoch, "train_loss": total / max(steps, 1), **valid}
        with metrics_path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        log.info("epoch %d: train loss %.4f, valid %s", epoch, line["train_loss"], _fmt(valid))
        if valid["AUC"] > best_auc:  # NaN (one-class validation) never improves
            best_auc, best_epoch, stale = valid["AUC"], epoch, 0
            _save_weights(model, out)
        else:
            stale += 1
            if stale >= opts.patience:
                break
    if best_epoch == 0:  # validation AUC undefined throughout: keep the last weights
        _save_weights(model, out)
    model.load_state_dict(torch.load(out / MODEL_FILE, weights_only=True))
    model.eval()
    result = TrainResult(best_epoch, best_auc, epoch, time.perf_counter() - start, len(tr), len(va))
    return model, result


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
