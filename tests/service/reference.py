"""What the PyTorch models say for raw ids: the reference the service's answers must match.

Everything here is computed independently of the service's code: histories are padded to the
model's full history length (as in training), content features are read from the ground-truth
arrays of `tests.export.tiny_content.store_features` (not through `FeatureStore`), and the CTR
comes from `segrec.onnx.CTRHead` on the interest model's PyTorch logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from segint.segments import exit_slot, n_segments
from tests.export.tiny import CONTENT_DIM, TINY, USERS, VIDEOS, tiny_model
from tests.export.tiny_ctr import CTR, CTR_USERS, CTR_VIDEOS, tiny_segrec

# The service's outputs go through ONNX Runtime; see tests/export/test_onnx.py for why 1e-5.
ATOL = RTOL = 1e-5
# CTR probabilities: see tests/export/test_ctr.py (observed gap <= 1.2e-7 on values in (0, 1)).
CTR_ATOL = 1e-6

History = Sequence[tuple[int, int, int]]  # (video_id, duration_ms, play_time_ms), newest first
Candidates = Sequence[tuple[int, int]]  # (video_id, duration_ms)
Features = dict[int, np.ndarray]  # video id -> (n_stored, Dc), row j = segment j
S = int(TINY["s_max"])


ARRAYS = ("segment_scores", "exit_distribution")


def score_body(
    user_id: int,
    candidates: Candidates,
    history: list[dict[str, int]] | None = None,
    include: Sequence[str] | None = ARRAYS,
) -> dict[str, object]:
    """A /score request body; ``history`` (request items) only when given. It asks for the
    per-candidate arrays the parity tests compare (``include``; None: the default fields)."""
    body: dict[str, object] = {
        "user_id": user_id,
        "candidates": [{"video_id": v, "duration_ms": d} for v, d in candidates],
    }
    if include is not None:
        body["include"] = list(include)
    if history is not None:
        body["history"] = history
    return body


def history_items(views: History, newest_ms: int) -> list[dict[str, int]]:
    """Request history items of ``views`` (newest first), one millisecond apart."""
    return [
        {"video_id": v, "duration_ms": d, "play_time_ms": p, "time_ms": newest_ms - i}
        for i, (v, d, p) in enumerate(views)
    ]


def _history(
    history: History, width: int, lookup: Callable[[np.ndarray], np.ndarray]
) -> dict[str, np.ndarray]:
    """(1, width) padded history arrays: video 0, exit 0, one segment, mask False."""
    h = min(len(history), width)
    hv, hd, hp = (np.array([x[i] for x in history[:h]], dtype=np.int64) for i in range(3))
    out = {
        "raw": np.zeros((1, width), np.int64),
        "hist_video_ids": np.zeros((1, width), np.int64),
        "hist_exit_slots": np.zeros((1, width), np.int64),
        "hist_n_segments": np.ones((1, width), np.int64),
        "hist_mask": np.zeros((1, width), bool),
    }
    if h:
        out["raw"][0, :h] = hv
        out["hist_video_ids"][0, :h] = lookup(hv)
        out["hist_exit_slots"][0, :h] = exit_slot(hp, hd)
        out["hist_n_segments"][0, :h] = n_segments(hd)
        out["hist_mask"][0, :h] = True
    return out


def video_content(features: Features, candidates: Candidates) -> np.ndarray:
    """(C, S, Dc): segment j of a candidate in slot j for j < N, zeros elsewhere/missing."""
    out = np.zeros((len(candidates), S, CONTENT_DIM), np.float32)
    for i, (vid, dur) in enumerate(candidates):
        rows = features.get(vid, np.zeros((0, CONTENT_DIM), np.float32))
        n = min(int(n_segments(dur)), len(rows))
        out[i, :n] = rows[:n]
    return out


def hist_content(features: Features, hist: dict[str, np.ndarray]) -> np.ndarray:
    """(1, H, Dc): mean of each view's watched segments 0..min(exit, N - 1) that are stored."""
    width = hist["raw"].shape[1]
    out = np.zeros((1, width, CONTENT_DIM), np.float32)
    for k in range(width):
        if not hist["hist_mask"][0, k]:
            continue
        rows = features.get(int(hist["raw"][0, k]), np.zeros((0, CONTENT_DIM), np.float32))
        watched = min(int(hist["hist_exit_slots"][0, k]) + 1, int(hist["hist_n_segments"][0, k]))
        if len(rows[:watched]):
            out[0, k] = rows[:watched].astype(np.float64).mean(axis=0)
    return out


def torch_logits(
    user_stream: str,
    user_id: int,
    history: History,
    candidates: Candidates,
    modalities: tuple[str, ...] = ("id",),
    features: Features | None = None,
) -> np.ndarray:
    """(C, S) logits of ``model.forward`` on the padded batch of C rows (history padded to
    the model's full history length, as in training)."""
    model = tiny_model(user_stream, modalities=modalities)
    c = len(candidates)
    hist = _history(history, int(TINY["history_len"]), VIDEOS.lookup)

    def rows(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.repeat(a, c, axis=0))

    content = {}
    if "content" in modalities:
        assert features is not None
        content = {
            "hist_content": rows(hist_content(features, hist)),
            "video_content": torch.from_numpy(video_content(features, candidates)),
        }
    with torch.no_grad():
        out = model(
            user_ids=torch.from_numpy(np.repeat(USERS.lookup([user_id]), c)),
            hist_video_ids=rows(hist["hist_video_ids"]),
            hist_exit_slots=rows(hist["hist_exit_slots"]),
            hist_n_segments=rows(hist["hist_n_segments"]),
            hist_mask=rows(hist["hist_mask"]),
            video_ids=torch.from_numpy(VIDEOS.lookup([v for v, _ in candidates])),
            n_segments=torch.from_numpy(n_segments([d for _, d in candidates])),
            **content,
        )
    return out.numpy()


def torch_ctr(user_id: int, history: History, candidates: Candidates) -> np.ndarray:
    """(C,) CTR of the tiny DIN SegRec head on the tiny self model's PyTorch logits, with the
    history padded to the head's full history length and ids in the head's vocabularies."""
    from segrec.onnx import CTRHead

    logits = torch_logits("self", user_id, history, candidates)
    c = len(candidates)
    hist = _history(history, int(CTR["history_len"]), CTR_VIDEOS.lookup)
    with torch.no_grad():
        out = CTRHead(tiny_segrec())(
            user_ids=torch.from_numpy(np.repeat(CTR_USERS.lookup([user_id]), c)),
            video_ids=torch.from_numpy(CTR_VIDEOS.lookup([v for v, _ in candidates])),
            n_segments=torch.from_numpy(n_segments([d for _, d in candidates])),
            **{k: torch.from_numpy(np.repeat(v, c, axis=0)) for k, v in hist.items() if k != "raw"},
            interest_logits=torch.from_numpy(logits),
        )
    return out.numpy()
