"""The training view of the segment interest model: what only training does around it.

`SegmentInterestModel.forward` (the module the export traces) is the architecture only.
`SegmentInterestTrain` wraps it for the training step (torchrec's ``DLRMTrain`` pattern) and
owns the two training-only behaviours:

- **Own exit out of the counts**: a training row is one of the views the exit-count prior and
  the user residual are counted from, so it is scored without its own exit in either;
  otherwise the prior hands the model its label (tests/training/test_leave_one_out.py).
  count_mode "loo": the row's own exit (``Batch.exit_slot``, the label) is subtracted.
  count_mode "kfold": the row is scored with the counts of the other folds (``Batch.fold``,
  ``Batch.hist_fold`` and the per-fold counts this wrapper holds, `training.folds`).
- **Id dropout** (``cfg.id_dropout``, training mode only): a share of user, history-video and
  video ids become "unknown" (row 0), so the unknown rows of the id and per-video profile
  tables learn what a cold id looks like and the model leans less on memorising sparse ids.

It takes the training `Batch` (torchrec's ``DLRMTrain.forward(batch)``), so a new model input
added to `Batch` and to the model's ``forward`` / ``encode`` reaches it with no edit here.
The wrapper has no parameters of its own: its state is the model's, which is what a checkpoint
saves (`training.checkpoint.save_weights` is given the model, not the wrapper).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import torch
from torch import Tensor, nn

from model.decoder import FoldCounts
from model.network import SegmentInterestModel
from training.data import Batch


class SegmentInterestTrain(nn.Module):
    """Logits (B, S) of the training rows: the model's forward with the rows' own exits out of
    the counts, and id dropout.

    ``fold_counts``: the per-fold exit counts of the fitting rows, required with count_mode
    "kfold" and an exit prior (a plain attribute, not a buffer: training-only state that no
    checkpoint saves).
    """

    def __init__(self, model: SegmentInterestModel, fold_counts: FoldCounts | None = None):
        super().__init__()
        self.model = model
        self.id_dropout = model.cfg.id_dropout
        self.kfold = model.cfg.count_mode == "kfold" and model.decoder.prior_strength > 0
        if self.kfold and fold_counts is None:
            raise ValueError("count_mode 'kfold' needs the per-fold exit counts (fold_counts)")
        self.fold_counts = fold_counts

    def forward(self, batch: Batch) -> Tensor:
        # batch: the model's inputs (`Batch.inputs()`), the rows' own exits ``exit_slot`` and,
        # with kfold, their folds. Any other input passes through to the model unchanged.
        m = self.model
        folds: tuple[FoldCounts, Tensor, Tensor] | None = None
        if self.kfold:
            if batch.fold is None or batch.hist_fold is None:
                raise ValueError("count_mode 'kfold': the batch has no folds (fold, hist_fold)")
            if bool((batch.fold < 0).any()):
                raise ValueError("count_mode 'kfold': a training row outside every fold")
            folds = (cast(FoldCounts, self.fold_counts), batch.fold, batch.hist_fold)
        # The user residual reads the ids before id dropout: it is a statistic of the counts.
        h = (batch.hist_video_ids, batch.hist_exit_slots, batch.hist_n_segments, batch.hist_mask)
        if folds is None:
            residual = m.user_residual(*h, batch.video_ids, batch.exit_slot)
        else:
            residual = m.user_residual(*h, folds=folds)
        if self.training and self.id_dropout > 0:
            batch = replace(
                batch,
                user_ids=self._drop_ids(batch.user_ids),
                hist_video_ids=self._drop_ids(batch.hist_video_ids),
                video_ids=self._drop_ids(batch.video_ids),
            )
        states = m.encode(**batch.inputs())  # one (B, S, d) per modality
        prior = None
        if folds is not None:  # of the (possibly dropped) ids, the row's fold left out
            removed = folds[0].removed(folds[1], batch.video_ids, batch.n_segments)
            prior = m.decoder.exit_prior_parts(batch.video_ids, None, batch.n_segments, removed)
        elif m.decoder.prior_strength > 0:  # of the (possibly dropped) ids, own exit left out
            prior = m.decoder.exit_prior_parts(batch.video_ids, batch.exit_slot, batch.n_segments)
        logits: Tensor = m.decoder(
            states, batch.video_ids, batch.n_segments, user_residual=residual, prior=prior
        )
        return logits  # (B, S)

    def _drop_ids(self, ids: Tensor) -> Tensor:
        drop = torch.rand(ids.shape, device=ids.device) < self.id_dropout
        return ids.masked_fill(drop, 0)
