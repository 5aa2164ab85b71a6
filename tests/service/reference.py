"""What the PyTorch model says for raw ids: the reference the service's answers must match."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from segint.segments import exit_slot, n_segments
from tests.export.tiny import TINY, USERS, VIDEOS, tiny_model

# The service's outputs go through ONNX Runtime; see tests/export/test_onnx.py for why 1e-5.
ATOL = RTOL = 1e-5


def torch_logits(
    user_stream: str,
    user_id: int,
    history: Sequence[tuple[int, int, int]],  # (video_id, duration_ms, play_time_ms), newest first
    candidates: Sequence[tuple[int, int]],  # (video_id, duration_ms)
) -> np.ndarray:
    """(C, S) logits of ``model.forward`` on the padded batch of C rows (history padded to
    the model's full history length, as in training)."""
    model = tiny_model(user_stream)
    c, width = len(candidates), TINY["history_len"]
    h = min(len(history), width)
    hv, hd, hp = (np.array([x[i] for x in history[:h]], dtype=np.int64) for i in range(3))
    hist_video = np.zeros((1, width), np.int64)
    hist_exit = np.zeros((1, width), np.int64)
    hist_nseg = np.ones((1, width), np.int64)
    mask = np.zeros((1, width), bool)
    if h:
        hist_video[0, :h] = VIDEOS.lookup(hv)
        hist_exit[0, :h] = exit_slot(hp, hd)
        hist_nseg[0, :h] = n_segments(hd)
        mask[0, :h] = True

    def rows(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.repeat(a, c, axis=0))

    with torch.no_grad():
        out = model(
            user_ids=torch.from_numpy(np.repeat(USERS.lookup([user_id]), c)),
            hist_video_ids=rows(hist_video),
            hist_exit_slots=rows(hist_exit),
            hist_n_segments=rows(hist_nseg),
            hist_mask=rows(mask),
            video_ids=torch.from_numpy(VIDEOS.lookup([v for v, _ in candidates])),
            n_segments=torch.from_numpy(n_segments([d for _, d in candidates])),
        )
    return out.numpy()
