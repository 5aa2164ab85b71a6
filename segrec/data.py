"""SegRec model inputs from an interaction table: per-row arrays and batch assembly.

Notation: ``n`` table rows, ``B`` rows in a batch, ``H`` history length of a batch (the
longest real history among its rows, at least 1), ``S`` slots.

Every array is aligned with the rows of the *whole* table (all splits), because a row's
history may point at any earlier row (`segint.splits.history_index`). Ids are vocabulary
indices of the training rows (0 = unknown). History tensors have the same names and meaning
as the segment interest model's inputs (docs/contracts.md), so one feed dict serves both
models when they are exported together. Batches are gathered with numpy fancy indexing (no
per-row Python), which keeps an epoch over ~30k rows well under a second of data work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from segint.errors import DataError
from segint.vocab import Vocab
from segrec.labels import EffectiveViewLabel

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SegRecInputs:
    """Per-row model inputs and labels of one table."""

    user_idx: IntArray  # (n,) vocabulary index of the user
    video_idx: IntArray  # (n,) vocabulary index of the video
    n_segments: IntArray  # (n,) N, 1..S
    exit_slot: IntArray  # (n,) exit slot 0..N (history outcomes only; never a row's own input)
    history: IntArray  # (n, H_max) row indices of previous views, -1 padded
    label: npt.NDArray[np.float32]  # (n,) effective view 1.0 / 0.0
    weight_logits: npt.NDArray[np.float32] | None  # (n, S) interest / ItemPosition logits

    def __len__(self) -> int:
        return len(self.user_idx)

    def batch(self, rows: IntArray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Keyword arguments of `SegRecModel.forward` for ``rows`` (label not included)."""
        h = self.history[rows]  # (B, H_max), real entries first
        real = h >= 0
        width = max(1, int(real.sum(axis=1).max(initial=0)))
        h, real = h[:, :width], real[:, :width]  # (B, H)
        safe = np.where(real, h, 0)
        # Padding values are valid indices (video 0 = unknown, one segment); the mask tells.
        arrays = {
            "user_ids": self.user_idx[rows],
            "video_ids": self.video_idx[rows],
            "n_segments": self.n_segments[rows],
            "hist_video_ids": np.where(real, self.video_idx[safe], 0),
            "hist_exit_slots": np.where(real, self.exit_slot[safe], 0),
            "hist_n_segments": np.where(real, self.n_segments[safe], 1),
            "hist_mask": real,
        }
        out = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}
        if self.weight_logits is not None:
            out["interest_logits"] = torch.from_numpy(self.weight_logits[rows]).to(device)
        return out

    def labels(self, rows: IntArray) -> torch.Tensor:
        return torch.from_numpy(self.label[rows])


def build_inputs(
    table: pl.DataFrame,
    history: IntArray,
    users: Vocab,
    videos: Vocab,
    label: EffectiveViewLabel,
    s_max: int,
    weight_logits: npt.NDArray[np.float32] | None = None,
) -> SegRecInputs:
    """Arrays of every table row; ``weight_logits`` (n, S) only for modes that weight slots."""
    n = table.height
    if history.shape[0] != n:
        raise ValueError(f"history has {history.shape[0]} rows, table {n}")
    n_seg = table["n_segments"].to_numpy().astype(np.int64)
    if n and (n_seg.min() < 1 or n_seg.max() > s_max):
        raise DataError(
            f"segment counts must be in 1..{s_max} (got {n_seg.min()}..{n_seg.max()}); "
            "filter the log with the same --s-max"
        )
    if weight_logits is not None and weight_logits.shape != (n, s_max):
        raise ValueError(f"weight logits have shape {weight_logits.shape}, need {(n, s_max)}")
    return SegRecInputs(
        user_idx=users.lookup(table["user_id"].to_numpy()),
        video_idx=videos.lookup(table["video_id"].to_numpy()),
        n_segments=n_seg,
        exit_slot=table["exit_slot"].to_numpy().astype(np.int64),
        history=history,
        label=label(table["play_time_ms"].to_numpy(), table["duration_ms"].to_numpy()),
        weight_logits=None if weight_logits is None else weight_logits.astype(np.float32),
    )
