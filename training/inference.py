"""Batched inference and the model's metric inputs (used by validation and `segint evaluate`).

The model's interest logits are the ranking scores as they are: under the ``paper`` protocol
the impossible slots ``j > N`` keep their large constant logit, so they rank as "never the
exit", consistent with the exit distribution, which puts no mass on them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader

from segint.heads import exit_distribution, outcome_mask
from segint.metrics import PROTOCOLS, evaluate_scores
from training.data import InteractionDataset

FloatArray = npt.NDArray[np.float64]


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, dataset: InteractionDataset, batch_size: int, device: torch.device | str
) -> npt.NDArray[np.float32]:
    """(n, S) logits of every row of ``dataset``, in order; the model is left in eval mode."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate)
    out = [model(**batch.to(device).inputs()).float().cpu().numpy() for batch in loader]
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out, axis=0)


def scores_and_exit_dist(
    logits: npt.ArrayLike, n_segments: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``(scores, exit_dist)`` for `segint.metrics.evaluate_scores`, each (n, S).

    scores = logits; exit_dist = ``softmax(-logits)`` over each view's ``N + 1`` real outcomes.
    """
    scores = np.asarray(logits, dtype=np.float64)
    dist = exit_distribution(scores, outcome_mask(n_segments, scores.shape[1]))
    return scores, dist


def evaluate_dataset(
    model: torch.nn.Module,
    dataset: InteractionDataset,
    batch_size: int,
    device: torch.device | str,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Metrics of the model on ``dataset`` under every protocol: ``{protocol: {metric: x}}``."""
    target, n_seg = dataset.targets()
    scores, dist = scores_and_exit_dist(predict_logits(model, dataset, batch_size, device), n_seg)
    return {p: evaluate_scores(scores, dist, target, n_seg, p, seed=seed) for p in PROTOCOLS}
