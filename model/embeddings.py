"""Token embeddings of the segment interest model: what each modality's tokens are made of.

Shape legend (as in model/network.py): B batch rows, C candidate videos, S slots (cfg.s_max),
H history views, M = 1 + H user tokens, d token width, Dc content feature width.

    SlotPosition     where a slot sits in its video (learned slot row + structural features)
    ViewOutcome      how a history view ended (exit slot, completion, recency)
    history_stats    per-user statistics of the history views (cfg.history_stats)
    ModalityEmbedding -> IdEmbedding (ids + side features) | ContentEmbedding (projected features)
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from model.config import ModelConfig


def slot_features(n_segments: Tensor, s_max: int, slots: Tensor | None = None) -> Tensor:
    """(C,) N -> (C, S, 4) [j/N, 1[j==N] (completion slot), 1[j<N] (real segment), N/S];
    (C, T, 4) for the slots j in ``slots`` (T,) only (a ragged run's first T slots)."""
    n = n_segments.to(torch.float32)[:, None]  # (C, 1)
    if slots is None:
        slots = torch.arange(s_max, device=n_segments.device)
    j = slots.to(torch.float32)[None, :]  # (1, S) or (1, T)
    ratio = j / n  # (C, S)
    return torch.stack(
        [ratio, (j == n).float(), (j < n).float(), (n / s_max).expand_as(ratio)], dim=-1
    )


class SlotPosition(nn.Module):
    """Where a slot sits in its video: learned slot embedding + a map of its structural features.

    The model must know N: slot 3 of a 4-segment video (its last) differs from slot 3 of 30.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.slot = nn.Embedding(cfg.s_max, cfg.d_model)
        self.struct = nn.Linear(4, cfg.d_model)
        self.s_max = cfg.s_max

    def forward(self, n_segments: Tensor, slots: Tensor | None = None) -> Tensor:
        # (C,) -> (C, S, d); with slots (T,): (C, T, d)
        struct: Tensor = self.struct(slot_features(n_segments, self.s_max, slots))
        return struct + (self.slot.weight if slots is None else self.slot(slots))


class ViewOutcome(nn.Module):
    """How a history view ended: exit-slot embedding + [exit/N, 1[exit==N], N/S] + recency."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.exit = nn.Embedding(cfg.s_max + 1, cfg.d_model)  # exit slot 0..N, N <= S
        self.struct = nn.Linear(3, cfg.d_model)
        self.recency = nn.Embedding(cfg.history_len, cfg.d_model)  # most recent view first
        self.s_max, self.history_len = cfg.s_max, cfg.history_len

    def forward(self, exit_slots: Tensor, n_segments: Tensor) -> Tensor:  # (B, H) -> (B, H, d)
        e, n = exit_slots.to(torch.float32), n_segments.to(torch.float32)
        feats = torch.stack([e / n, (exit_slots == n_segments).float(), n / self.s_max], dim=-1)
        # Views older than history_len share the oldest recency row (no index error).
        age = torch.arange(exit_slots.shape[1], device=exit_slots.device)
        recency = self.recency(age.clamp(max=self.history_len - 1))  # (H, d), broadcast over B
        out: Tensor = self.exit(exit_slots) + self.struct(feats) + recency
        return out


N_HISTORY_STATS = 5


def history_stats(exits: Tensor, n_segments: Tensor, mask: Tensor) -> Tensor:
    """(B, H) exit slots, segment counts, mask -> (B, 5) per-user statistics of the history.

    [completion rate (exit == N), mean watched fraction (exit / N, 1 for a completion),
    early-exit rate (exit == 0), log(1 + views) / log(1 + 20), 1 if any view]; rates are over
    the real entries and 0 without history. Only the H views the model receives count.
    """
    m = mask.to(torch.float32)
    k = m.sum(1)  # (B,)
    denom = k.clamp(min=1.0)
    e, n = exits.to(torch.float32), n_segments.to(torch.float32).clamp(min=1.0)
    complete = ((exits == n_segments).float() * m).sum(1) / denom
    watched = ((e / n).clamp(max=1.0) * m).sum(1) / denom
    early = ((exits == 0).float() * m).sum(1) / denom
    count = torch.log1p(k) / math.log(21.0)
    return torch.stack([complete, watched, early, count, (k > 0).float()], dim=-1)


class ModalityEmbedding(nn.Module):
    """What every modality's tokens share: slot positions, history view outcomes, LN + dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.position = SlotPosition(cfg)
        self.outcome = ViewOutcome(cfg) if cfg.history_tokens else None
        self.stats = nn.Linear(N_HISTORY_STATS, cfg.d_model) if cfg.history_stats else None
        self.user_norm, self.video_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def user_tokens(
        self, user: Tensor, views: Tensor, exits: Tensor, n: Tensor, mask: Tensor
    ) -> Tensor:
        # user (B, 1, d) token, views (B, H, d) one per history view -> (B, M, d)
        if self.stats is not None:  # the user token carries the history's statistics
            user = user + self.stats(history_stats(exits, n, mask))[:, None]
        if self.outcome is not None:
            user = torch.cat([user, views + self.outcome(exits, n)], dim=1)
        out: Tensor = self.drop(self.user_norm(user))
        return out

    def video_tokens(self, segments: Tensor, n: Tensor, slots: Tensor | None = None) -> Tensor:
        # segments (C, S, d), or (C, 1, d) for a per-video token -> (C, S, d) ((C, T, d) with slots)
        out: Tensor = self.drop(self.video_norm(segments + self.position(n, slots)))
        return out


class SideEmbedding(nn.Module):
    """Sum of categorical side-feature embeddings per id: codes (n_ids, K) are a buffer (code 0 =
    unknown), so a lookup needs only the id; the K tables share one embedding matrix."""

    def __init__(self, n_ids: int, sizes: tuple[int, ...], d: int):
        super().__init__()
        self.sizes = sizes
        self.register_buffer("codes", torch.zeros(n_ids, len(sizes), dtype=torch.int64))
        starts = [0, *torch.cumsum(torch.tensor(sizes), 0).tolist()[:-1]]
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.int64))
        self.table = nn.Embedding(sum(sizes), d)

    @torch.no_grad()
    def set_codes(self, codes: Tensor) -> None:
        c = cast(Tensor, self.codes)
        if tuple(codes.shape) != tuple(c.shape):
            raise ValueError(f"side codes have shape {tuple(codes.shape)}, need {tuple(c.shape)}")
        sizes = torch.tensor(self.sizes)
        if (codes < 0).any() or (codes >= sizes).any():
            raise ValueError(f"side codes must be in [0, size) per feature, sizes {self.sizes}")
        c.copy_(codes)
        c[0] = 0  # the unknown id has unknown features

    def forward(self, ids: Tensor) -> Tensor:  # (...) -> (..., d)
        codes = cast(Tensor, self.codes)[ids] + cast(Tensor, self.offsets)  # (..., K)
        out: Tensor = self.table(codes).sum(-2)
        return out


class IdEmbedding(ModalityEmbedding):
    """ID modality: user-ID token + history view tokens; video-ID + position per slot.

    Row 0 of each ID table is the learned "unknown" id. With side features, each id's vector
    also gets the sum of its side-feature embeddings.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.user = nn.Embedding(cfg.n_users, cfg.d_model)
        self.video = nn.Embedding(cfg.n_videos, cfg.d_model)  # shared: targets and history
        d = cfg.d_model
        self.video_side = (
            SideEmbedding(cfg.n_videos, cfg.video_side_sizes, d) if cfg.video_side_sizes else None
        )
        self.user_side = (
            SideEmbedding(cfg.n_users, cfg.user_side_sizes, d) if cfg.user_side_sizes else None
        )

    def video_vectors(self, ids: Tensor) -> Tensor:
        v: Tensor = self.video(ids)
        return v if self.video_side is None else v + self.video_side(ids)

    def users(
        self, user_ids: Tensor, hist_ids: Tensor, exits: Tensor, n: Tensor, mask: Tensor
    ) -> Tensor:
        user = self.user(user_ids)
        if self.user_side is not None:
            user = user + self.user_side(user_ids)
        return self.user_tokens(user[:, None], self.video_vectors(hist_ids), exits, n, mask)

    def videos(self, video_ids: Tensor, n_segments: Tensor, slots: Tensor | None = None) -> Tensor:
        return self.video_tokens(self.video_vectors(video_ids)[:, None], n_segments, slots)


class ContentEmbedding(ModalityEmbedding):
    """Content modality: projected per-view (history) and per-segment (video) features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.proj = nn.Linear(cfg.content_dim, cfg.d_model)  # shared: targets and history
        self.user_token = nn.Parameter(torch.zeros(cfg.d_model))  # a user has no content

    def users(self, hist_content: Tensor, exits: Tensor, n: Tensor, mask: Tensor) -> Tensor:
        user = self.user_token.expand(hist_content.shape[0], 1, -1)  # (B, 1, d)
        return self.user_tokens(user, self.proj(hist_content), exits, n, mask)

    def videos(
        self, video_content: Tensor, n_segments: Tensor, slots: Tensor | None = None
    ) -> Tensor:
        # video_content (C, S, Dc), or (C, T, Dc) with slots
        return self.video_tokens(self.proj(video_content), n_segments, slots)


def require(x: Tensor | None, name: str) -> Tensor:
    """``x``, or a ValueError saying which config setting needs the input ``name``."""
    if x is None:
        why = {
            "n_segments": "exit_prior_base is 'n_segments'",
            "user_residual": "user_tilt > 0",
        }.get(name, "'content' is in cfg.modalities")
        raise ValueError(f"{name} is required when {why}")
    return x
