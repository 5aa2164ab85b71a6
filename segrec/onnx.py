"""The SegRec CTR head as an exportable module (`export.ctr` exports it next to the interest model).

The graph takes the named tensors of `SegRecModel.forward` - the same names as the interest
model's inputs plus ``interest_logits`` (B, S), the interest model's output - and returns
``ctr`` (B,), the effective-view probability; names, order and symbolic axes are declared in
`export.contract` (``GRAPHS["ctr"]``), which `CTRHead.forward`'s arguments follow. Every mode
keeps all eight inputs, used or not (history for WideDeep, interest logits for video / segsum /
segadjust), so the service feeds every head the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export.contract import CTR, GRAPHS
from segrec.network import SegRecModel

# The graph's input names = `CTRHead.forward`'s arguments, in order (tests check they agree).
INPUTS = GRAPHS[CTR].input_names()


class CTRHead(nn.Module):
    """``sigmoid`` of the video-level logit, so the graph returns a probability."""

    def __init__(self, model: SegRecModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        user_ids: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        interest_logits: Tensor,
    ) -> Tensor:
        logit = self.model(
            user_ids,
            video_ids,
            n_segments,
            hist_video_ids,
            hist_exit_slots,
            hist_n_segments,
            hist_mask,
            interest_logits,
        )
        return torch.sigmoid(logit)
