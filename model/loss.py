"""Training losses on per-slot interest logits. Pure functions, outside the exported module.

Every loss takes ``logits (B, S)`` (higher = more interest = less likely to leave there),
``exit_slot (B,)`` (V: the slot the view ended in, ``N`` for a view watched to the end) and
``n_segments (B,)`` (N), and returns the mean over the rows with ``V < S``; rows with
``V == S`` (a 40-segment video watched to the end has no slot for its outcome) are excluded,
as in the reference. A batch with no such row gives 0 (still differentiable), never NaN.

The real outcomes of a view are slots ``0..N`` (slot ``N`` = "watched to the end", only when
``N < S``); slots ``> N`` are impossible and only ``bpr_max`` looks at them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# A finite "minus infinity" for masked softmax inputs (no NaN in any gradient).
_NEG = -1e9


def bpr_max(logits: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
    """Reference loss (BPR-max with roles flipped): the exit slot vs ALL other S - 1 slots.

    Row loss ``-log clamp(sum_{j != V} s_j sigmoid(z_j - z_V), 1e-8, 1 - 1e-8)`` with
    ``s = softmax`` of the other slots' logits: padding and never-reached slots count as
    comparators too. ``n_segments`` is unused (kept for a uniform signature). Pair it with
    ``mask_impossible=False``: constant +1e4 logits on impossible slots take all the softmax
    weight and drive the loss to ~0 with no gradient.
    """
    z, v, keep = _prepare(logits, exit_slot, n_segments)
    s_max = z.shape[1]
    z_exit = z.gather(1, v[:, None])  # (B, 1)
    others = torch.arange(s_max, device=z.device)[None, :] != v[:, None]  # (B, S)
    weights = torch.softmax(z.masked_fill(~others, _NEG), dim=1)  # 0 on the exit slot itself
    p = (weights * torch.sigmoid(z - z_exit)).sum(dim=1)
    row = -torch.log(p.clamp(1e-8, 1 - 1e-8))
    return _mean(row, keep)


def pairwise(logits: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
    """Paper eq. 8: ``-log sigmoid(z_j - z_V)`` over the view's other real outcomes j.

    The comparators are the slots ``j in 0..N`` (``j < S``), ``j != V``. Per row we take the
    MEAN over those pairs (the paper sums), so that long videos do not outweigh short ones;
    then the mean over rows.
    """
    z, v, keep = _prepare(logits, exit_slot, n_segments)
    real = _outcome_mask(z, n_segments)
    pairs = real & (torch.arange(z.shape[1], device=z.device)[None, :] != v[:, None])
    z_exit = z.gather(1, v[:, None])
    nll = -F.logsigmoid(z - z_exit)  # (B, S)
    row = (nll * pairs).sum(dim=1) / pairs.sum(dim=1).clamp(min=1)
    return _mean(row, keep)


def bce(logits: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
    """The paper's ablation: independent per-segment labels, BCE with logits.

    Watched segments ``j < V`` are labelled 1, the exit segment ``j == V < N`` 0; segments after
    the exit are ignored. A view watched to the end (``V == N``) labels all N segments 1 and
    has no 0 (the completion slot N is not a segment and is never trained by this loss).
    Mean over the labelled segments of a row, then over rows.
    """
    z, v, keep = _prepare(logits, exit_slot, n_segments)
    j = torch.arange(z.shape[1], device=z.device)[None, :]
    n = n_segments[:, None]
    labelled = (j <= v[:, None]) & (j < n)  # watched segments + the exit segment (if any)
    target = (j < v[:, None]).to(z.dtype)
    nll = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    row = (nll * labelled).sum(dim=1) / labelled.sum(dim=1).clamp(min=1)
    return _mean(row, keep)


def exit_ce(logits: Tensor, exit_slot: Tensor, n_segments: Tensor) -> Tensor:
    """Listwise exit likelihood ``-log softmax(-z)_V`` over the real outcomes ``0..N``.

    This directly trains the exit distribution the service reports (segint.heads).
    """
    z, v, keep = _prepare(logits, exit_slot, n_segments)
    real = _outcome_mask(z, n_segments)
    log_p = torch.log_softmax((-z).masked_fill(~real, _NEG), dim=1)  # (B, S)
    row = -log_p.gather(1, v[:, None]).squeeze(1)
    return _mean(row, keep)


def distill_ce(logits: Tensor, teacher: Tensor, n_segments: Tensor) -> Tensor:
    """Cross-entropy ``-sum_j t_j log softmax(-z)_j`` of the model's exit distribution under a
    teacher's (B, S), over the real outcomes ``0..N`` (``optim.distill``, `training.teacher`).

    The teacher's row is renormalised over those outcomes (a 40-segment video's completion
    mass has no column). Unlike the label losses every row counts, ``V == S`` included: the
    teacher has a distribution for it. Mean over rows with any teacher mass.
    """
    if logits.dim() != 2 or teacher.shape != logits.shape or n_segments.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (B, S), teacher (B, S), n_segments (B,); got "
            f"{tuple(logits.shape)}, {tuple(teacher.shape)}, {tuple(n_segments.shape)}"
        )
    z = logits.float()
    real = _outcome_mask(z, n_segments)
    t = torch.where(real, teacher.float().clamp(min=0.0), 0.0)
    mass = t.sum(dim=1)
    keep = mass > 0
    t = t / mass.clamp(min=1e-12)[:, None]
    log_p = torch.log_softmax((-z).masked_fill(~real, _NEG), dim=1)
    row = -(t * torch.where(real, log_p, 0.0)).sum(dim=1)
    return _mean(row, keep)


LOSSES = {"bpr_max": bpr_max, "pairwise": pairwise, "bce": bce, "exit_ce": exit_ce}


def _prepare(
    logits: Tensor, exit_slot: Tensor, n_segments: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    if (
        logits.dim() != 2
        or exit_slot.shape != logits.shape[:1]
        or n_segments.shape != exit_slot.shape
    ):
        raise ValueError(
            f"expected logits (B, S), exit_slot (B,), n_segments (B,); got "
            f"{tuple(logits.shape)}, {tuple(exit_slot.shape)}, {tuple(n_segments.shape)}"
        )
    keep = exit_slot < logits.shape[1]
    # Excluded rows get a harmless in-range slot; their losses are zeroed in _mean.
    return logits.float(), torch.where(keep, exit_slot, 0).long(), keep


def _outcome_mask(z: Tensor, n_segments: Tensor) -> Tensor:
    return torch.arange(z.shape[1], device=z.device)[None, :] <= n_segments[:, None]  # (B, S)


def _mean(row: Tensor, keep: Tensor) -> Tensor:
    # torch.where (not multiplication) so that an excluded row's inf/NaN cannot leak.
    return torch.where(keep, row, 0.0).sum() / keep.sum().clamp(min=1)
