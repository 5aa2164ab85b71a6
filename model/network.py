"""The segment interest network (He et al., SIGIR 2025, eqs. 1-7), reimplemented and fixed.

Shape legend:
    B   batch rows (users); in ``forward`` row b scores video b, so C = B there
    C   candidate videos in ``score`` (a user batch of 1 broadcasts over them)
    S   slots on the segment axis (cfg.s_max); a video has N segments and N + 1 outcomes 0..N
    H   history views; M = 1 + H user tokens (M = 1 when cfg.history_tokens is False)
    d   token width, h heads, dh = d / h; T query tokens, K key tokens
    L   encoder layers; n_mod modalities; Dc content feature width

Per modality (one instance each, any number of modalities; each part in its own module):
    IdEmbedding | ContentEmbedding  -> user tokens (B, M, d), video tokens (C, S, d)
    ModalityEncoder: L layers of CrossAttentionBlocks (eqs. 1-5)  -> video states (C, S, d)
then InterestDecoder: reducers + bilinear fusion (eq. 6) + position bias (eq. 7) + a per-video
exit profile + (cfg.exit_prior > 0) a log-prior from each video's training exit counts -> logits
(C, S). Higher logit = more interest = less likely to leave there.

Cost note: the paper's user side has one token per *watched segment* of the history; we use one
token per history *view* (video + how the view ended), i.e. M = 1 + H instead of up to 1 + 40 H.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from model.config import ModelConfig
from model.decoder import IMPOSSIBLE_LOGIT, FoldCounts, InterestDecoder
from model.embeddings import (
    ContentEmbedding,
    IdEmbedding,
    history_stats,
    require,
    slot_features,
)
from model.encoder import MASK_VALUE, CrossAttention, CrossAttentionBlock, ModalityEncoder

# Names other modules import from here (export.fused, tests): the network's parts by their home.
__all__ = [
    "IMPOSSIBLE_LOGIT",
    "MASK_VALUE",
    "CrossAttention",
    "CrossAttentionBlock",
    "ModalityEncoder",
    "SegmentInterestModel",
    "history_stats",
    "slot_features",
]


class SegmentInterestModel(nn.Module):
    """Logits (B, S) of a user's interest in every slot of a video. See docs/contracts.md."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.ModuleDict(
            {m: IdEmbedding(cfg) if m == "id" else ContentEmbedding(cfg) for m in cfg.modalities}
        )
        self.encoders = nn.ModuleDict({m: ModalityEncoder(cfg) for m in cfg.modalities})
        self.decoder = InterestDecoder(cfg)
        self.apply(_init_weights)
        self.decoder.reset_offsets()

    def forward(
        self,
        user_ids: Tensor,  # (B,)
        hist_video_ids: Tensor,  # (B, H)
        hist_exit_slots: Tensor,  # (B, H)
        hist_n_segments: Tensor,  # (B, H)
        hist_mask: Tensor,  # (B, H) True = real history entry
        video_ids: Tensor,  # (B,)
        n_segments: Tensor,  # (B,)
        hist_content: Tensor | None = None,  # (B, H, Dc)
        video_content: Tensor | None = None,  # (B, S, Dc)
    ) -> Tensor:
        # The architecture only; id dropout and leave-one-out are training.wrapper's.
        residual = self.user_residual(hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask)
        states = self.encode(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, video_ids,
            n_segments, hist_content, video_content,
        )  # fmt: skip
        logits: Tensor = self.decoder(states, video_ids, n_segments, user_residual=residual)
        return logits

    def encode(
        self,
        user_ids: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        hist_content: Tensor | None = None,
        video_content: Tensor | None = None,
    ) -> list[Tensor]:
        """Both streams (forward's inputs): one video state (B, S, d) per modality."""
        users, user_mask = self._user_tokens(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, hist_content
        )
        videos, video_mask = self._video_tokens(video_ids, n_segments, video_content)
        return [
            enc(v, video_mask, u, user_mask)
            for enc, v, u in zip(self._encoders(), videos, users, strict=True)
        ]

    def set_side_features(
        self, video_codes: Tensor | None = None, user_codes: Tensor | None = None
    ) -> None:
        """Fill the side-feature code buffers: (n_videos, K_v) / (n_users, K_u) int64 codes of
        each vocabulary row (`training.side.side_codes`); row 0 is kept unknown."""
        emb = cast(IdEmbedding | None, self.embeddings["id"] if "id" in self.embeddings else None)
        for codes, side, name in (
            (video_codes, emb.video_side if emb else None, "video"),
            (user_codes, emb.user_side if emb else None, "user"),
        ):
            if codes is None:
                continue
            if side is None:
                raise ValueError(f"{name} side codes given, but {name}_side_sizes is empty")
            side.set_codes(codes)

    def encode_user(
        self,
        user_ids: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        hist_content: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Self stream: per-layer user states (B, n_mod, L, M, d) and user_mask (B, M).

        With ``user_tilt`` the user's residual R rides along as one more token (M = 2 + H),
        R in its first channel and masked out: `score` takes it off before attending, so the
        cached user state carries it and the graphs need no extra input or output.
        """
        self._require_self_stream("encode_user")
        users, user_mask = self._user_tokens(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, hist_content
        )
        out = torch.stack(
            [enc.encode_user(u, user_mask) for enc, u in zip(self._encoders(), users, strict=True)],
            dim=1,
        )  # (B, n_mod, L, M, d)
        residual = self.user_residual(hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask)
        if residual is not None:
            carrier = nn.functional.pad(residual[:, None], (0, out.shape[-1] - 1))  # (B, d)
            carrier = carrier[:, None, None, None, :].expand(-1, out.shape[1], out.shape[2], 1, -1)
            out = torch.cat([out, carrier], dim=3)  # (B, n_mod, L, M + 1, d)
            user_mask = torch.cat([user_mask, torch.zeros_like(user_mask[:, :1])], dim=1)
        return out, user_mask

    def score(
        self,
        user_states: Tensor,  # (B, n_mod, L, M, d), B = C or 1
        user_mask: Tensor,  # (B, M)
        video_ids: Tensor,  # (C,)
        n_segments: Tensor,  # (C,)
        video_content: Tensor | None = None,  # (C, S, Dc), (C, T, Dc) with slot_index
        slot_index: Tensor | None = None,  # (T,) = 0..T-1: compute only the first T slots
    ) -> Tensor:
        """Self stream: logits (C, S) for C videos; a user batch of 1 broadcasts over them.

        Ragged scoring: with ``slot_index`` = 0..T-1 and every N < T (or N = T = S), only the
        first T slots are computed and the logits are (C, T), equal on those slots to the full
        run's: slots j >= N are never attention keys, so the real slots and the completion
        slot do not depend on the slots cut off.
        """
        self._require_self_stream("score")
        residual: Tensor | None = None
        if self.decoder.tilt is not None:  # the residual's carrier token (encode_user)
            residual = user_states[:, 0, 0, -1, 0]  # (B,)
            user_states, user_mask = user_states[:, :, :, :-1], user_mask[:, :-1]
        videos, video_mask = self._video_tokens(video_ids, n_segments, video_content, slot_index)
        states = [
            enc.encode_video(v, video_mask, user_states[:, i], user_mask)
            for i, (enc, v) in enumerate(zip(self._encoders(), videos, strict=True))
        ]
        logits: Tensor = self.decoder(
            states, video_ids, n_segments, slots=slot_index, user_residual=residual
        )
        return logits

    def _encoders(self) -> list[ModalityEncoder]:  # typed view of the ModuleDict
        return [cast(ModalityEncoder, enc) for enc in self.encoders.values()]

    def user_residual(
        self,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        target_ids: Tensor | None = None,
        target_exits: Tensor | None = None,
        folds: tuple[FoldCounts, Tensor, Tensor] | None = None,
    ) -> Tensor | None:
        """(B,) the user's propensity residual R (None without user_tilt). Training passes the
        row's video and exit (a fitting row, count_mode "loo"): a same-video history view
        leaves that exit out. Or, count_mode "kfold", ``folds``: the per-fold counts, the
        rows' folds (B,) and the history views' folds (B, H) (-1: not a fitting row); each
        history view's expectation is then of the counts outside the row's fold."""
        if self.decoder.tilt is None:
            return None
        ids, exits, n, mask = self._clean_history(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask
        )
        if folds is None:
            return self.decoder.user_residual(ids, exits, n, mask, target_ids, target_exits)
        counts, fold, hist_fold = folds
        fold_h = fold[:, None].expand_as(ids)  # (B, H)
        fold_v, fold_n, glob = counts.removed(fold_h, ids, n)  # (B, H, S) each
        in_fold = mask & (hist_fold == fold_h)
        removed = (fold_v, fold_n, glob, in_fold)
        return self.decoder.user_residual(ids, exits, n, mask, removed=removed)

    def _clean_history(
        self, hist_video_ids: Tensor, hist_exit_slots: Tensor, hist_n_segments: Tensor,
        hist_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        # Padded history entries are reset to neutral values, so whatever the caller put there
        # (ids, -1 slots, N = 0) can neither index out of range, divide by zero nor leak.
        hist_mask = hist_mask.to(torch.bool)
        n = torch.where(hist_mask, hist_n_segments, 1).clamp(1, self.cfg.s_max)
        exits = torch.minimum(torch.where(hist_mask, hist_exit_slots, 0).clamp(min=0), n)
        ids = torch.where(hist_mask, hist_video_ids, 0)
        return ids, exits, n, hist_mask

    def _user_tokens(
        self,
        user_ids: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        hist_content: Tensor | None,
    ) -> tuple[list[Tensor], Tensor]:
        ids, exits, n, hist_mask = self._clean_history(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask
        )
        users = []
        for emb in self.embeddings.values():
            if isinstance(emb, IdEmbedding):
                users.append(emb.users(user_ids, ids, exits, n, hist_mask))
            elif isinstance(emb, ContentEmbedding):
                content = require(hist_content, "hist_content") * hist_mask[..., None]
                users.append(emb.users(content, exits, n, hist_mask))
        user_mask = torch.ones_like(user_ids, dtype=torch.bool)[:, None]  # the user token
        if self.cfg.history_tokens:
            user_mask = torch.cat([user_mask, hist_mask], dim=1)  # (B, M)
        return users, user_mask

    def _video_tokens(
        self,
        video_ids: Tensor,
        n_segments: Tensor,
        video_content: Tensor | None,
        slots: Tensor | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        n = n_segments.clamp(1, self.cfg.s_max)
        videos = []
        for emb in self.embeddings.values():
            if isinstance(emb, IdEmbedding):
                videos.append(emb.videos(video_ids, n, slots))
            elif isinstance(emb, ContentEmbedding):
                videos.append(emb.videos(require(video_content, "video_content"), n, slots))
        # Keys are the real segments j < N; slot N (completion) and beyond are padding tokens.
        j = torch.arange(self.cfg.s_max, device=n.device) if slots is None else slots
        return videos, j[None, :] < n[:, None]  # (C, S), or (C, T)

    def _require_self_stream(self, what: str) -> None:
        if self.cfg.user_stream != "self":
            raise ValueError(f"{what} needs user_stream='self', got {self.cfg.user_stream!r}")


def _init_weights(module: nn.Module) -> None:
    # As the reference: N(0, 0.02) weights, zero biases; LayerNorm keeps (1, 0).
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, ContentEmbedding):
        nn.init.normal_(module.user_token, std=0.02)
    elif isinstance(module, InterestDecoder) and module.bilinear is not None:
        nn.init.normal_(module.bilinear, std=0.02)
