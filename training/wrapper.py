"""The training view of the segment interest model: what only training does around it.

`SegmentInterestModel.forward` (the module the export traces) is the architecture only.
`SegmentInterestTrain` wraps it for the training step (torchrec's ``DLRMTrain`` pattern) and
owns the two training-only behaviours:

- **Leave-one-out** (``Batch.exit_slot``, the label): a training row is one of the views the exit-count prior
  and the user residual are counted from, so it is scored with its own exit left out of both;
  otherwise the prior hands the model its label (tests/training/test_leave_one_out.py).
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

import torch
from torch import Tensor, nn

from model.network import SegmentInterestModel
from training.data import Batch


class SegmentInterestTrain(nn.Module):
    """Logits (B, S) of the training rows: the model's forward plus leave-one-out and id dropout."""

    def __init__(self, model: SegmentInterestModel):
        super().__init__()
        self.model = model
        self.id_dropout = model.cfg.id_dropout

    def forward(self, batch: Batch) -> Tensor:
        # batch: the model's inputs (`Batch.inputs()`) and the rows' own exits ``exit_slot``,
        # left out of the counts. Any other input passes through to the model unchanged.
        m = self.model
        # The user residual reads the ids before id dropout: it is a statistic of the counts.
        residual = m.user_residual(
            batch.hist_video_ids, batch.hist_exit_slots, batch.hist_n_segments, batch.hist_mask,
            batch.video_ids, batch.exit_slot,
        )  # fmt: skip
        if self.training and self.id_dropout > 0:
            batch = replace(
                batch,
                user_ids=self._drop_ids(batch.user_ids),
                hist_video_ids=self._drop_ids(batch.hist_video_ids),
                video_ids=self._drop_ids(batch.video_ids),
            )
        states = m.encode(**batch.inputs())  # one (B, S, d) per modality
        prior = None
        if m.decoder.prior_strength > 0:  # of the (possibly dropped) ids, own exit left out
            prior = m.decoder.exit_prior(batch.video_ids, batch.exit_slot, batch.n_segments)
        logits: Tensor = m.decoder(
            states, batch.video_ids, batch.n_segments, user_residual=residual, prior=prior
        )
        return logits  # (B, S)

    def _drop_ids(self, ids: Tensor) -> Tensor:
        drop = torch.rand(ids.shape, device=ids.device) < self.id_dropout
        return ids.masked_fill(drop, 0)
