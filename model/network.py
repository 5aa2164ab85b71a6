"""The segment interest network (He et al., SIGIR 2025, eqs. 1-7), reimplemented and fixed.

Shape legend:
    B   batch rows (users); in ``forward`` row b scores video b, so C = B there
    C   candidate videos in ``score`` (a user batch of 1 broadcasts over them)
    S   slots on the segment axis (cfg.s_max); a video has N segments and N + 1 outcomes 0..N
    H   history views; M = 1 + H user tokens (M = 1 when cfg.history_tokens is False)
    d   token width, h heads, dh = d / h; T query tokens, K key tokens
    L   encoder layers; n_mod modalities; Dc content feature width

Per modality (one instance each, any number of modalities):
    IdEmbedding | ContentEmbedding  -> user tokens (B, M, d), video tokens (C, S, d)
    ModalityEncoder: L layers of CrossAttentionBlocks (eqs. 1-5)  -> video states (C, S, d)
then InterestDecoder: reducers + bilinear fusion (eq. 6) + position bias (eq. 7) + a per-video
exit profile + (cfg.exit_prior > 0) a log-prior from each video's training exit counts -> logits
(C, S). Higher logit = more interest = less likely to leave there.

Cost note: the paper's user side has one token per *watched segment* of the history; we use one
token per history *view* (video + how the view ended), i.e. M = 1 + H instead of up to 1 + 40 H.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from model.config import ModelConfig

# Masked attention logits: large but finite, so a fully masked row is a uniform (finite)
# softmax in PyTorch and ONNX Runtime alike; -inf would give NaN there.
MASK_VALUE = -1e4
# Logit of the impossible outcomes j > N: "certainly not the exit", ranked after every real slot.
IMPOSSIBLE_LOGIT = 1e4


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


class CrossAttention(nn.Module):
    """One query stream attending over the concatenated keys of several sources (eqs. 1-4).

    Each (query stream, key source) pair is its own block with its own query/key/value maps
    (the reference's v2v, t2v, v2t, t2t); the logits of all blocks share one softmax.
    """

    def __init__(self, cfg: ModelConfig, n_sources: int):
        super().__init__()
        d = cfg.d_model
        self.q = nn.ModuleList(nn.Linear(d, d) for _ in range(n_sources))
        self.k = nn.ModuleList(nn.Linear(d, d) for _ in range(n_sources))
        self.v = nn.ModuleList(nn.Linear(d, d) for _ in range(n_sources))
        self.out = nn.Linear(d, d)
        self.n_heads, self.scale = cfg.n_heads, (d // cfg.n_heads) ** -0.5
        self.logit_dropout = cfg.attn_logit_dropout
        self.drop = nn.Dropout(cfg.dropout)

    def heads(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, h, T, dh)
        return torch.unflatten(x, -1, (self.n_heads, -1)).transpose(1, 2)

    def forward(self, x: Tensor, sources: list[tuple[Tensor, Tensor]]) -> Tensor:
        # x (Bq, T, d); each source = (tokens (Bk, K, d), key mask (Bk, K)), Bk in {Bq, 1}:
        # a batch of 1 broadcasts in the matmuls below, never copied Bq times.
        logits, values = [], []
        for q, k, v, (tokens, mask) in zip(self.q, self.k, self.v, sources, strict=True):
            qh = self.heads(q(x)) * self.scale  # (Bq, h, T, dh)
            att = qh @ self.heads(k(tokens)).transpose(-2, -1)  # (Bq, h, T, K)
            logits.append(att.masked_fill(~mask[:, None, None, :], MASK_VALUE))
            values.append(self.heads(v(tokens)))  # (Bk, h, K, dh)
        att = torch.cat(logits, dim=-1)  # (Bq, h, T, sum K)
        if self.logit_dropout:  # reference quirk: a dropped masked logit becomes 0 (leak)
            att = self.drop(att)
        att = att.softmax(dim=-1)
        if not self.logit_dropout:
            att = self.drop(att)
        start = values[0].shape[2]
        y = att[..., :start] @ values[0]  # (Bq, h, T, dh)
        for val in values[1:]:  # split the shared softmax back per source
            y = y + att[..., start : start + val.shape[2]] @ val
            start += val.shape[2]
        out: Tensor = self.out(y.transpose(1, 2).flatten(2))  # (Bq, T, d)
        return out


class CrossAttentionBlock(nn.Module):
    """Post-LN update of one token stream: attention, residual, LN; FFN, residual, LN (eq. 5)."""

    def __init__(self, cfg: ModelConfig, n_sources: int):
        super().__init__()
        d = cfg.d_model
        self.attn = CrossAttention(cfg, n_sources)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, cfg.ffn_dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.ffn_dim, d)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, sources: list[tuple[Tensor, Tensor]]) -> Tensor:
        x = self.norm1(x + self.drop(self.attn(x, sources)))
        out: Tensor = self.norm2(x + self.drop(self.ffn(x)))
        return out


class ModalityEncoder(nn.Module):
    """L user-video cross-attention layers for one modality (eqs. 1-5).

    Layer l = a video block (video queries over [video ; user] keys) and a user block (user
    queries over [video ; user] keys for the "cross" stream, over user keys only for "self").
    The last layer has no user block: its output would feed nothing, and leaving it out means
    every parameter gets a gradient (DistributedDataParallel needs that). Returns the LAST
    layer's video output (the reference returns the last layer's input: quirk switch).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, n_user_sources = cfg.n_layers, 2 if cfg.user_stream == "cross" else 1
        self.video = nn.ModuleList(CrossAttentionBlock(cfg, 2) for _ in range(n))
        self.user = nn.ModuleList(CrossAttentionBlock(cfg, n_user_sources) for _ in range(n - 1))
        self.cross, self.n_layers = cfg.user_stream == "cross", n
        self.n_run = n - 1 if cfg.reference_last_layer_bug else n

    def forward(self, v: Tensor, v_mask: Tensor, u: Tensor, u_mask: Tensor) -> Tensor:
        # Training path, both streams: video (C, S, d) and user (B = C, M, d) updated together.
        for i in range(self.n_run):
            both = [(v, v_mask), (u, u_mask)]
            if i < self.n_run - 1:  # the next layer reads u
                u = self.user[i](u, both if self.cross else [(u, u_mask)])
            v = self.video[i](v, both)
        return v

    def encode_user(self, u: Tensor, u_mask: Tensor) -> Tensor:
        # Self stream only: the input user tokens of every layer, (B, M, d) -> (B, L, M, d).
        if self.n_layers == 0:
            return u[:, None][:, :0]  # (B, 0, M, d)
        states = [u]
        for block in self.user:
            states.append(block(states[-1], [(states[-1], u_mask)]))
        return torch.stack(states, dim=1)

    def encode_video(self, v: Tensor, v_mask: Tensor, states: Tensor, u_mask: Tensor) -> Tensor:
        # Self stream only: v (C, S, d), cached states (B, L, M, d) with B = C or 1 (broadcast).
        for i in range(self.n_run):
            v = self.video[i](v, [(v, v_mask), (states[:, i], u_mask)])
        return v


class InterestDecoder(nn.Module):
    """Per-slot logits from the modality outputs (eqs. 6-7) plus per-video exit profiles."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k, n_mod = cfg.d_model, cfg.fusion_heads, len(cfg.modalities)
        self.reducers = nn.ModuleList(nn.Linear(d, 1) for _ in range(n_mod))  # w_x . x + b_x
        # FinalMLP-style bilinear term per modality pair: sum_heads x_h^T W_h y_h (eq. 6).
        self.pairs = [(a, b) for a in range(n_mod) for b in range(a + 1, n_mod)]
        self.bilinear = (
            nn.Parameter(torch.zeros(len(self.pairs), k, d // k, d // k)) if self.pairs else None
        )
        self.fusion_heads = k
        # Per-slot offset (eq. 7) for each segment count N: where viewers leave depends on the
        # slot *and* the video's length (slot 3 is the end of a 4-segment video). Rows N = 0..S.
        # Neutral start (zeros), unlike the reference's (j + 1) w_j + b_j with w = b = 1, which
        # makes its loss ~0 from the first step.
        self.position_bias = (
            nn.Parameter(torch.zeros(cfg.s_max + 1, cfg.s_max)) if cfg.position_bias else None
        )
        self.profile = nn.Embedding(cfg.n_videos, cfg.s_max) if cfg.video_profile else None
        # Exit-count prior: minus log((c_vj + a g_j) / (n_v + a)) from the training rows' exit
        # counts c (a buffer: part of the checkpoint and of the exported graph, never trained),
        # times a learned weight. Row 0 (unknown video) has no counts, so it is the global profile g.
        self.prior_strength = cfg.exit_prior
        # exit_prior_base "n_segments": the pseudo-views are of the profile of the training
        # views with the video's segment count N (exit counts per N, rows N = 0..S, a buffer),
        # itself smoothed by one pseudo-view of g so that an N without views falls back to g.
        self.prior_by_n = cfg.exit_prior > 0 and cfg.exit_prior_base == "n_segments"
        if cfg.exit_prior > 0:
            self.register_buffer("exit_counts", torch.zeros(cfg.n_videos, cfg.s_max))
            self.register_buffer("global_exit", torch.full((cfg.s_max,), 1.0 / cfg.s_max))
            self.prior_weight = nn.Parameter(torch.ones(()))
        if self.prior_by_n:
            self.register_buffer("n_exit_counts", torch.zeros(cfg.s_max + 1, cfg.s_max))
        # User propensity tilt: logits + R * (slot_features . w), R the user's shrunk history
        # residual (user_residual). w starts at -user_tilt on j / N: exit log-probabilities
        # + user_tilt * R * j / N, the numpy tilt of ItemPosition+prior|N (training/propensity_tilt.py).
        self.tilt = (
            nn.Parameter(torch.tensor([-cfg.user_tilt, 0.0, 0.0, 0.0]))
            if cfg.user_tilt > 0
            else None
        )
        self.tilt_shrink = cfg.user_tilt_shrink
        self.mask_impossible, self.s_max = cfg.mask_impossible, cfg.s_max

    @torch.no_grad()
    def set_exit_counts(self, table: Tensor, n_table: Tensor | None = None) -> None:
        """Fill the exit-count buffer from the fitting rows' (n_videos, S) exit counts per video
        and slot (`segint.baselines.exit_counts`); row 0 (unknown video) is kept empty.

        ``n_table`` (S + 1, S): the same rows' exit counts per segment count N, required with
        ``exit_prior_base == "n_segments"`` (and refused without it).
        """
        if self.prior_strength <= 0:
            raise ValueError("set_exit_counts needs exit_prior > 0")
        if self.prior_by_n != (n_table is not None):
            raise ValueError(
                "set_exit_counts takes n_table (exit counts per N) exactly when "
                "exit_prior_base is 'n_segments'"
            )
        counts = cast(Tensor, self.exit_counts)
        counts.copy_(table)
        counts[0] = 0.0
        total = counts.sum(0)
        glob = total / total.sum().clamp(min=1.0)
        cast(Tensor, self.global_exit).copy_(glob.clamp(min=1e-6) / glob.clamp(min=1e-6).sum())
        if n_table is not None:
            cast(Tensor, self.n_exit_counts).copy_(n_table)

    def exit_prior(
        self, video_ids: Tensor, exclude: Tensor | None, n_segments: Tensor | None = None
    ) -> Tensor:
        """(C,) -> (C, S) log smoothed exit profile; ``exclude`` (C,) leaves one view out.

        With ``exit_prior_base == "n_segments"`` the smoothing profile is that of the video's
        segment count ``n_segments`` (C,) (required then); the left-out view is removed from
        the per-N counts too.
        """
        c = cast(Tensor, self.exit_counts)[video_ids]  # (C, S)
        own: Tensor | None = None
        if exclude is not None:  # training: the row's own exit is not evidence about itself
            own = self._one_hot(exclude)
            c = (c - own * (video_ids > 0).float()[:, None]).clamp(min=0.0)
        return self._smoothed(c, own, n_segments).log()

    def _one_hot(self, exits: Tensor) -> Tensor:
        # (...) exit slots -> (..., S); an exit at S (no slot) is all zeros
        own = nn.functional.one_hot(exits.clamp(0, self.s_max - 1), self.s_max).float()
        return own * (exits < self.s_max).float()[..., None]

    def _smoothed(self, c: Tensor, own: Tensor | None, n_segments: Tensor | None) -> Tensor:
        # (..., S) exit counts -> the smoothed exit profile (c + a base) / (n + a); ``own``
        # (..., S) is left out of the per-N counts too.
        glob = cast(Tensor, self.global_exit)
        base = glob.expand_as(c)
        if self.prior_by_n:
            n = _require(n_segments, "n_segments").clamp(0, self.s_max)
            cn = cast(Tensor, self.n_exit_counts)[n]  # (..., S) exit counts of same-N views
            if own is not None:
                cn = (cn - own).clamp(min=0.0)
            base = (cn + glob) / (cn.sum(-1, keepdim=True) + 1.0)
        a = self.prior_strength
        out: Tensor = (c + a * base) / (c.sum(-1, keepdim=True) + a)
        return out

    def user_residual(
        self,
        hist_ids: Tensor,  # (B, H) vocabulary rows, 0 for padding / unknown
        hist_exits: Tensor,  # (B, H) in 0..N
        hist_n: Tensor,  # (B, H) in 1..S
        hist_mask: Tensor,  # (B, H) bool
        target_ids: Tensor | None = None,  # (B,) training: the row's video ...
        target_exits: Tensor | None = None,  # (B,) ... and exit, a fitting row of the counts
    ) -> Tensor:
        """(B,) R = sum over history views of (watched fraction - the exit prior's expected
        watched fraction) / (views + user_tilt_shrink).

        A history view's expectation leaves its own exit out of its video's and N's counts
        (training rows are in them; a history view that is not a fitting row loses one count
        of another view at its slot instead, an approximation). In training the target row is a
        fitting row as well: a history view of the same video leaves the target's exit out too.
        """
        own = self._one_hot(hist_exits)  # (B, H, S)
        c = cast(Tensor, self.exit_counts)[hist_ids] - own * (hist_ids > 0).float()[..., None]
        if target_ids is not None and target_exits is not None:
            same = (hist_ids == target_ids[:, None]) & (hist_ids > 0)  # (B, H)
            c = c - same.float()[..., None] * self._one_hot(target_exits)[:, None, :]
        p = self._smoothed(c.clamp(min=0.0), own, hist_n)  # (B, H, S)
        n = hist_n.to(torch.float32)[..., None]  # (B, H, 1)
        j = torch.arange(self.s_max, device=p.device, dtype=torch.float32)
        expected = (p * torch.minimum(j, n) / n).sum(-1)  # (B, H)
        watched = torch.minimum(hist_exits, hist_n).to(torch.float32) / n[..., 0]
        m = hist_mask.to(torch.float32)
        return ((watched - expected) * m).sum(1) / (m.sum(1) + self.tilt_shrink)

    def reset_offsets(self) -> None:
        if self.position_bias is not None:
            nn.init.zeros_(self.position_bias)
        if self.profile is not None:
            nn.init.zeros_(self.profile.weight)

    def forward(
        self,
        states: list[Tensor],
        video_ids: Tensor,
        n_segments: Tensor,
        exclude_exit_slots: Tensor | None = None,
        slots: Tensor | None = None,
        user_residual: Tensor | None = None,
    ) -> Tensor:
        # states: one (C, S, d) per modality -> logits (C, S); with slots (T,): (C, T, d) ->
        # (C, T), the per-slot offsets taken at those slots. user_residual (C,) or (1,): R.
        z = torch.stack([r(x) for r, x in zip(self.reducers, states, strict=True)]).sum(0)
        z = z.squeeze(-1)  # (C, S): w_x . x + b_x summed over modalities
        for p, (a, b) in enumerate(self.pairs):
            w = cast(Tensor, self.bilinear)[p]  # (k, d/k, d/k)
            xa = torch.unflatten(states[a], -1, (self.fusion_heads, -1))  # (C, S, k, d/k)
            xb = torch.unflatten(states[b], -1, (self.fusion_heads, -1))
            xw = (xa.unsqueeze(-2) @ w).squeeze(-2)  # (C, S, k, 1, d/k) @ (k, d/k, d/k)
            z = z + (xw * xb).sum(dim=(-2, -1))
        if self.position_bias is not None:
            z = z + _at(self.position_bias[n_segments.clamp(0, self.s_max)], slots)  # (C, S)
        if self.profile is not None:
            # (C, S): what ItemPosition captures, learned
            z = z + _at(self.profile(video_ids), slots)
        if self.prior_strength > 0:
            # Interest is "not leaving": a likely exit slot gets a lower logit. The prior is
            # normalised over all S slots before the slots are taken.
            prior = self.exit_prior(video_ids, exclude_exit_slots, n_segments)
            z = z - self.prior_weight * _at(prior, slots)
        if self.tilt is not None:
            r = _require(user_residual, "user_residual")
            shape = slot_features(n_segments.clamp(1, self.s_max), self.s_max, slots)
            z = z + r[:, None] * (shape @ self.tilt)  # (C, S)
        if self.mask_impossible:
            j = torch.arange(self.s_max, device=z.device) if slots is None else slots
            j = j[None, :]
            z = z.masked_fill(j > n_segments[:, None], IMPOSSIBLE_LOGIT)
        return z


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
        exclude_exit_slots: Tensor | None = None,  # (B,) training rows' own exits (exit_prior)
    ) -> Tensor:
        # The user residual reads the ids before id dropout: it is a statistic of the counts.
        residual = self._user_residual(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, video_ids,
            exclude_exit_slots,
        )  # fmt: skip
        if self.training and self.cfg.id_dropout > 0:
            user_ids, hist_video_ids, video_ids = (
                self._drop_ids(x) for x in (user_ids, hist_video_ids, video_ids)
            )
        users, user_mask = self._user_tokens(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, hist_content
        )
        videos, video_mask = self._video_tokens(video_ids, n_segments, video_content)
        states = [
            enc(v, video_mask, u, user_mask)
            for enc, v, u in zip(self._encoders(), videos, users, strict=True)
        ]
        logits: Tensor = self.decoder(
            states, video_ids, n_segments, exclude_exit_slots, user_residual=residual
        )
        return logits

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

    def _drop_ids(self, ids: Tensor) -> Tensor:
        # Training-time id dropout: a share of ids become "unknown" (row 0), so the unknown rows
        # of the user, video and per-video profile tables learn what a cold id looks like, and
        # the model leans less on memorising sparse ids.
        drop = torch.rand(ids.shape, device=ids.device) < self.cfg.id_dropout
        return ids.masked_fill(drop, 0)

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
        residual = self._user_residual(hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask)
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

    def _user_residual(
        self,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        video_ids: Tensor | None = None,
        exclude_exit_slots: Tensor | None = None,
    ) -> Tensor | None:
        # (B,) the user's propensity residual R (None without user_tilt); the target's exit
        # is left out of a same-video history view's counts when it is a fitting row.
        if self.decoder.tilt is None:
            return None
        ids, exits, n, mask = self._clean_history(
            hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask
        )
        target = video_ids if exclude_exit_slots is not None else None
        return self.decoder.user_residual(ids, exits, n, mask, target, exclude_exit_slots)

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
                content = _require(hist_content, "hist_content") * hist_mask[..., None]
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
                videos.append(emb.videos(_require(video_content, "video_content"), n, slots))
        # Keys are the real segments j < N; slot N (completion) and beyond are padding tokens.
        j = torch.arange(self.cfg.s_max, device=n.device) if slots is None else slots
        return videos, j[None, :] < n[:, None]  # (C, S), or (C, T)

    def _require_self_stream(self, what: str) -> None:
        if self.cfg.user_stream != "self":
            raise ValueError(f"{what} needs user_stream='self', got {self.cfg.user_stream!r}")


def _at(x: Tensor, slots: Tensor | None) -> Tensor:
    # (C, S) -> (C, T): the columns of a ragged run's slots (all of them without one)
    return x if slots is None else x.index_select(-1, slots)


def _require(x: Tensor | None, name: str) -> Tensor:
    if x is None:
        why = {
            "n_segments": "exit_prior_base is 'n_segments'",
            "user_residual": "user_tilt > 0",
        }.get(name, "'content' is in cfg.modalities")
        raise ValueError(f"{name} is required when {why}")
    return x


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
