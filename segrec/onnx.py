"""ONNX export of a SegRec CTR head (for the service, which exports it next to the interest model).

The exported graph takes the named tensors of `SegRecModel.forward` - the same names as the
interest model's inputs plus ``interest_logits`` (B, S), the interest model's output - and
returns ``ctr`` (B,), the effective-view probability. Batch and history axes are dynamic.
Every mode keeps all eight inputs, used or not (history for WideDeep, interest logits for
video / segsum / segadjust), so the service feeds every head the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from segrec.network import SegRecModel

OPSET = 18
HISTORY_INPUTS = ("hist_video_ids", "hist_exit_slots", "hist_n_segments", "hist_mask")


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


def export_ctr_head(model: SegRecModel, example: dict[str, Tensor], path: str | Path) -> Path:
    """Export ``model`` (eval mode) with ``torch.onnx.export(dynamo=True)`` to ``path``.

    ``example`` holds one batch of every `CTRHead.forward` input (``interest_logits``
    included, even for modes that ignore it); its batch size should not be 1, or the exporter
    may specialise the batch axis.
    """
    if model.cfg.content_dim:
        raise ValueError("exporting the content field is not supported yet")
    batch = torch.export.Dim("batch", min=1)
    history = torch.export.Dim("history", min=1)
    dynamic: dict[str, dict[int, torch.export.Dim]] = {
        name: {0: batch} for name in ("user_ids", "video_ids", "n_segments", "interest_logits")
    }
    dynamic.update({name: {0: batch, 1: history} for name in HISTORY_INPUTS})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        CTRHead(model).eval(),
        (),
        kwargs=example,
        f=str(path),
        dynamo=True,
        opset_version=OPSET,
        dynamic_shapes=dynamic,
        output_names=["ctr"],
    )
    return path
