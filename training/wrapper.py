"""The training view of the segment interest model: what only training does around it.

`SegmentInterestModel.forward` (the module the export traces) is the architecture only.
`SegmentInterestTrain` wraps it for the training step (torchrec's ``DLRMTrain`` pattern) and
owns the two training-only behaviours:

- **Leave-one-out** (``exit_slots``): a training row is one of the views the exit-count prior
  and the user residual are counted from, so it is scored with its own exit left out of both;
  otherwise the prior hands the model its label (tests/training/test_leave_one_out.py).
- **Id dropout** (``cfg.id_dropout``, training mode only): a share of user, history-video and
  video ids become "unknown" (row 0), so the unknown rows of the id and per-video profile
  tables learn what a cold id looks like and the model leans less on memorising sparse ids.

The wrapper has no parameters of its own: its state is the model's, which is what a checkpoint
saves (`training.checkpoint.save_weights` is given the model, not the wrapper).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.network import SegmentInterestModel


class SegmentInterestTrain(nn.Module):
    """Logits (B, S) of the training rows: the model's forward plus leave-one-out and id dropout."""

    def __init__(self, model: SegmentInterestModel):
        super().__init__()
        self.model = model
        self.id_dropout = model.cfg.id_dropout

    def forward(
        self,
        user_ids: Tensor,  # (B,)
        hist_video_ids: Tensor,  # (B, H)
        hist_exit_slots: Tensor,  # (B, H)
        hist_n_segments: Tensor,  # (B, H)
        hist_mask: Tensor,  # (B, H) True = real history entry
        video_ids: Tensor,  # (B,)
        n_segments: Tensor,  # (B,)
        exit_slots: Tensor,  # (B,) the rows' own exits, left out of the counts
        hist_content: Tensor | None = None,  # (B, H, Dc)
        video_content: Tensor | None = None,  # (B, S, Dc)
    ) -> Tensor:
        m = self.model
        # The user residual reads the ids before id dropout: it is a statistic of the counts.
        residual = m.user_residual(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, video_ids, exit_slots
        )
        if self.training and self.id_dropout > 0:
            user_ids, hist_video_ids, video_ids = (
                self._drop_ids(x) for x in (user_ids, hist_video_ids, video_ids)
            )
        states = m.encode(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, video_ids,
            n_segments, hist_content, video_content,
        )  # fmt: skip
        prior = None
        if m.decoder.prior_strength > 0:  # of the (possibly dropped) ids, own exit left out
            prior = m.decoder.exit_prior(video_ids, exit_slots, n_segments)  # (B, S)
        logits: Tensor = m.decoder(
            states, video_ids, n_segments, user_residual=residual, prior=prior
        )
        return logits

    def _drop_ids(self, ids: Tensor) -> Tensor:
        drop = torch.rand(ids.shape, device=ids.device) < self.id_dropout
        return ids.masked_fill(drop, 0)
