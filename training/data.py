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

Content modality (``Dc`` = feature width): given a `segint.features.FeatureStore`, each batch
also carries ``video_content`` (B, S, Dc), the stored features of the target video's segments,
and ``hist_content`` (B, H, Dc), the mean feature of the watched segments of each history view
(`FeatureStore.history_means`, the function the service uses too, so training and serving
agree). Both are gathered per batch, vectorised, rather than per row; segments or videos
missing from the store are zeros, as padding is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from torch.utils.data import Dataset

from segint.errors import DataError, SegintError
from segint.vocab import Vocab

if TYPE_CHECKING:
    from segint.features import FeatureStore

log = logging.getLogger(__name__)
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
    row: int = -1  # table row of the target view (the content features are looked up by it)


def open_content_store(
    path: str | Path | None, model_cfg: Any, l1_normalize: bool = False
) -> FeatureStore | None:
    """The feature store a model needs: None without the content modality.

    Raises:
        SegintError: a content model without a store, an unreadable store, or a store whose
            width differs from ``model_cfg.content_dim``.
    """
    if "content" not in model_cfg.modalities:
        return None
    if not path:
        raise SegintError(
            "the model has the content modality: give its segment feature store with "
            "--features STORE"
        )
    from segint.features import FeatureStore

    store = FeatureStore.open(path, l1_normalize=l1_normalize)
    if store.dim != model_cfg.content_dim:
        raise SegintError(
            f"feature store {path} has width {store.dim}, the model's content_dim is "
            f"{model_cfg.content_dim}"
        )
    return store


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
    hist_content: torch.Tensor | None = None  # (B, H, Dc) float32, content models only
    video_content: torch.Tensor | None = None  # (B, S, Dc) float32, content models only
    # Training only, count_mode "kfold" (not model inputs): the count fold of each row (B,)
    # and of each history view (B, H), -1 for a view that is not a fitting row or padding.
    fold: torch.Tensor | None = None
    hist_fold: torch.Tensor | None = None
    # Training only, optim.distill > 0 (not a model input): the teacher's exit distribution of
    # each row (B, S) float32 (`training.teacher`).
    teacher: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device)
        return Batch(**moved)

    def inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model's ``forward`` (everything but the label; the
        content tensors only when present, so ID-only models see exactly their inputs)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in NOT_INPUTS and getattr(self, f.name) is not None
        }


# Batch fields that are not model inputs: the label and the training-only count folds.
NOT_INPUTS = frozenset({"exit_slot", "fold", "hist_fold", "teacher"})


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
        content: the segment feature store of a content model (`open_content_store`); None
            for ID-only models. Batch with `collate` (the method) to get the content tensors.
        folds: (n,) the count fold of each table row, -1 for rows that are not fitting rows
            (`training.folds.count_folds`; count_mode "kfold" training rows only). Batch with
            `collate` (the method) to get ``fold`` and ``hist_fold``.
        teacher: (n, S) the teacher's exit distribution of each table row (`training.teacher`;
            ``optim.distill`` training rows only). Batch with `collate` to get ``teacher``.
    """

    def __init__(
        self,
        table: pl.DataFrame,
        history: IntArray,
        rows: npt.ArrayLike,
        users: Vocab,
        videos: Vocab,
        s_max: int,
        content: FeatureStore | None = None,
        folds: IntArray | None = None,
        teacher: npt.NDArray[np.float32] | None = None,
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
        self.s_max = s_max
        self.content = content
        if folds is not None and folds.shape != (table.height,):
            raise ValueError(f"folds has shape {folds.shape}, the table {table.height} rows")
        self.folds = folds
        if teacher is not None:
            if teacher.shape != (table.height, s_max):
                raise ValueError(f"teacher has shape {teacher.shape}, need {(table.height, s_max)}")
            if np.isnan(teacher[self.rows]).any():
                raise ValueError("teacher has no distribution for some of the dataset's rows")
        self.teacher = teacher
        if content is not None:
            self.raw_video = table["video_id"].to_numpy().astype(np.int64)  # (n,) store keys
            covered = np.isin(self.raw_video[self.rows], content.video_ids)
            if len(self.rows) and not covered.any():
                raise DataError(
                    f"feature store {content.path} holds none of these rows' videos; "
                    "is it the store of this log?"
                )
            if not covered.all():
                log.warning(
                    "feature store %s lacks %d of %d rows' videos (their features are zeros)",
                    content.path, int((~covered).sum()), len(self.rows),
                )  # fmt: skip

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
            row=int(r),
        )

    def collate(self, examples: Sequence[Example]) -> Batch:
        """`collate` plus, for a content model, ``video_content`` and ``hist_content``; with
        ``folds``, ``fold`` and ``hist_fold``; with a teacher, the rows' ``teacher``."""
        batch = collate(examples)
        if self.content is None and self.folds is None and self.teacher is None:
            return batch
        rows = np.array([e.row for e in examples], dtype=np.int64)  # (B,)
        # History rows laid out exactly as `collate` pads them: right-padded, most recent first.
        h = batch.hist_mask.shape[1]
        hist_rows = np.full((len(rows), h), -1, dtype=np.int64)  # (B, H)
        for i, r in enumerate(rows):
            real = self.history[r][self.history[r] >= 0]
            hist_rows[i, : len(real)] = real
        mask = hist_rows >= 0
        safe = np.where(mask, hist_rows, 0)
        extra: dict[str, torch.Tensor] = {}
        if self.content is not None:
            video, _ = self.content.video_matrix(
                self.raw_video[rows], self.n_segments[rows], self.s_max
            )  # (B, S, Dc)
            hist, _ = self.content.history_means(
                self.raw_video[safe], self.exit_slot[safe], self.n_segments[safe], mask
            )  # (B, H, Dc), zeros where masked or missing
            extra |= {
                "video_content": torch.from_numpy(video),
                "hist_content": torch.from_numpy(hist),
            }
        if self.folds is not None:
            extra |= {
                "fold": torch.from_numpy(self.folds[rows].copy()),
                "hist_fold": torch.from_numpy(np.where(mask, self.folds[safe], -1)),
            }
        if self.teacher is not None:
            extra["teacher"] = torch.from_numpy(self.teacher[rows].astype(np.float32))
        return Batch(**{f.name: getattr(batch, f.name) for f in fields(batch)} | extra)

    def targets(self) -> tuple[IntArray, IntArray]:
        """(exit_slot, n_segments) of the dataset's rows, in order; for the metrics."""
        return self.exit_slot[self.rows], self.n_segments[self.rows]
