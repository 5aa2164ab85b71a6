"""Model inputs from an interaction table: vocabularies, per-row examples and collation.

Notation: ``n`` table rows, ``B`` rows in a batch, ``H`` history length of a batch (the
longest real history among its rows, at least 1), ``S`` = ``s_max`` slots.

Ids become vocabulary indices built from the *training* rows only (0 = unknown), so a video
first seen in validation or test is "unknown" to the model exactly as a new upload would be
in production. A row's history is its user's previous views anywhere in the table (any
split, strictly earlier in time; `segint.splits.history_index`), each described by the video,
the slot where that view ended and the video's segment count. The row's own outcome is never
an input.

Rows whose exit slot is ``S`` (complete views of ``S``-segment videos) are kept: they count in
the MAE, and the loss functions skip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch.utils.data import Dataset

from segint.errors import DataError
from segint.vocab import Vocab

IntArray = npt.NDArray[np.int64]


def build_vocabs(table: pl.DataFrame, train_rows: npt.ArrayLike) -> tuple[Vocab, Vocab]:
    """User and video vocabularies of the training rows (``train_rows``: indices or a mask)."""
    rows = np.asarray(train_rows)
    users = table["user_id"].to_numpy()[rows]
    videos = table["video_id"].to_numpy()[rows]
    if len(users) == 0:
        raise DataError("no training rows: the split left nothing to train on")
    return Vocab(users), Vocab(videos)


class Example(NamedTuple):
    """One row: the target view plus its user's real history (length ``h <= H_max``)."""

    user_id: int
    video_id: int
    n_segments: int
    exit_slot: int
    hist_video_ids: IntArray  # (h,)
    hist_exit_slots: IntArray  # (h,)
    hist_n_segments: IntArray  # (h,)


@dataclass(frozen=True)
class Batch:
    """Collated rows as tensors; field names match `SegmentInterestModel.forward`."""

    user_ids: torch.Tensor  # (B,) int64
    hist_video_ids: torch.Tensor  # (B, H) int64, 0 where padded
    hist_exit_slots: torch.Tensor  # (B, H) int64, 0 where padded
    hist_n_segments: torch.Tensor  # (B, H) int64, 1 where padded
    hist_mask: torch.Tensor  # (B, H) bool, True = real history entry
    video_ids: torch.Tensor  # (B,) int64
    n_segments: torch.Tensor  # (B,) int64, 1..S
    exit_slot: torch.Tensor  # (B,) int64, 0..N (the label; not a model input)

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model's ``forward`` (everything but the label)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "exit_slot"}


def collate(examples: Sequence[Example]) -> Batch:
    """Stack examples, right-padding histories to the longest one in the batch.

    Padding uses values that are valid indices for every embedding (video 0 = unknown, exit
    slot 0, one segment) so a model that forgets the mask still cannot index out of range;
    ``hist_mask`` tells real entries apart. ``H`` is at least 1 so tensors are never empty.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    b = len(examples)
    h = max(1, max(len(e.hist_video_ids) for e in examples))
    hist_video = np.zeros((b, h), dtype=np.int64)
    hist_exit = np.zeros((b, h), dtype=np.int64)
    hist_nseg = np.ones((b, h), dtype=np.int64)
    mask = np.zeros((b, h), dtype=bool)
    for i, e in enumerate(examples):
        k = len(e.hist_video_ids)
        hist_video[i, :k] = e.hist_video_ids
        hist_exit[i, :k] = e.hist_exit_slots
        hist_nseg[i, :k] = e.hist_n_segments
        mask[i, :k] = True

    def column(name: str) -> torch.Tensor:
        return torch.tensor([getattr(e, name) for e in examples], dtype=torch.int64)

    return Batch(
        user_ids=column("user_id"),
        hist_video_ids=torch.from_numpy(hist_video),
        hist_exit_slots=torch.from_numpy(hist_exit),
        hist_n_segments=torch.from_numpy(hist_nseg),
        hist_mask=torch.from_numpy(mask),
        video_ids=column("video_id"),
        n_segments=column("n_segments"),
        exit_slot=column("exit_slot"),
    )


class InteractionDataset(Dataset[Example]):
    """The rows ``rows`` of ``table`` as model examples.

    Args:
        table: the whole table from `segint.data.load_table` (all splits), because
            histories may point at any row.
        history: (n, H_max) row indices of each row's previous views, -1 padded
            (`segint.splits.history_index` on the same table).
        rows: indices of the rows this dataset yields (e.g. the training rows).
        users, videos: vocabularies built from the training rows.
        s_max: slots of the model; every row's segment count must be ``<= s_max``.
    """

    def __init__(
        self,
        table: pl.DataFrame,
        history: IntArray,
        rows: npt.ArrayLike,
        users: Vocab,
        videos: Vocab,
        s_max: int,
    ) -> None:
        if history.shape[0] != table.height:
            raise ValueError(f"history has {history.shape[0]} rows, table {table.height}")
        self.rows = np.asarray(rows, dtype=np.int64)
        self.history = history
        self.n_segments = table["n_segments"].to_numpy().astype(np.int64)
        self.exit_slot = table["exit_slot"].to_numpy().astype(np.int64)
        too_long = self.n_segments > s_max
        if too_long.any():
            i = int(np.argmax(too_long))
            raise DataError(
                f"row {i} has {self.n_segments[i]} segments but the model has s_max={s_max} "
                "slots; filter the data with the same --s-max"
            )
        if (self.n_segments < 1).any():
            raise DataError("rows with zero segments (duration 0); filter them out first")
        self.user_idx = users.lookup(table["user_id"].to_numpy())  # (n,)
        self.video_idx = videos.lookup(table["video_id"].to_numpy())  # (n,)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Example:
        r = self.rows[i]
        h = self.history[r]
        h = h[h >= 0]  # most recent first, real entries only
        return Example(
            user_id=int(self.user_idx[r]),
            video_id=int(self.video_idx[r]),
            n_segments=int(self.n_segments[r]),
            exit_slot=int(self.exit_slot[r]),
            hist_video_ids=self.video_idx[h],
            hist_exit_slots=self.exit_slot[h],
            hist_n_segments=self.n_segments[h],
        )

    def targets(self) -> tuple[IntArray, IntArray]:
        """(exit_slot, n_segments) of the dataset's rows, in order; for the metrics."""
        return self.exit_slot[self.rows], self.n_segments[self.rows]
