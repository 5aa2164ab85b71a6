"""The segment interest decoder (paper eqs. 6-7) and the exit-count prior it carries.

Shape legend (as in model/network.py): B batch rows, C candidate videos, S slots, H history
views, T slots of a ragged run, d token width, k fusion heads.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, cast, overload

import torch
from torch import Tensor, nn

from model.config import ModelConfig
from model.embeddings import require, slot_features

# Logit of the impossible outcomes j > N: "certainly not the exit", ranked after every real slot.
IMPOSSIBLE_LOGIT = 1e4


class FoldCounts(NamedTuple):
    """Training only (count_mode "kfold"): the fitting rows' exit counts split by fold, a
    training-side state never in the checkpoint or the exported graph. Summed over the folds
    they are the decoder's ``exit_counts`` / ``n_exit_counts``."""

    video: Tensor  # (K, n_videos, S), row 0 (unknown video) empty
    n: Tensor  # (K, S + 1, S): per segment count N
    glob: Tensor  # (K, S): the global profile of the counts *outside* each fold

    def removed(
        self, fold: Tensor, video_ids: Tensor, n_segments: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(...) folds, video rows and segment counts -> the (..., S) video and (..., S) per-N
        counts of those folds, what a row of that fold is scored without, and (..., S) the
        global profile it is scored with."""
        s_max = self.n.shape[1] - 1
        n = n_segments.clamp(0, s_max)
        return self.video[fold, video_ids], self.n[fold, n], self.glob[fold]


def global_profile(counts: Tensor) -> Tensor:
    """(..., n_videos, S) exit counts -> (..., S) the exit profile of all their views, floored
    at 1e-6 per slot (an empty table gives the uniform profile)."""
    total = counts.sum(-2)
    glob = (total / total.sum(-1, keepdim=True).clamp(min=1.0)).clamp(min=1e-6)
    return glob / glob.sum(-1, keepdim=True)


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
        # exit_prior_adaptive: (alpha, beta) of a(n_v) = exit_prior * exp(alpha + beta log1p(n_v))
        self.prior_adapt = nn.Parameter(torch.zeros(2)) if cfg.exit_prior_adaptive else None
        # prior_mlp: a per-slot logit correction from the prior's parts (log prior, log base
        # profile, log1p(n_v)), the slot's features and the user residual; the last layer
        # starts at zero (see reset_offsets), so the model starts as without it.
        self.prior_mlp = (
            nn.Sequential(nn.Linear(8, cfg.prior_mlp), nn.GELU(), nn.Linear(cfg.prior_mlp, 1))
            if cfg.prior_mlp > 0
            else None
        )
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
        cast(Tensor, self.global_exit).copy_(global_profile(counts))
        if n_table is not None:
            cast(Tensor, self.n_exit_counts).copy_(n_table)

    def exit_prior(
        self,
        video_ids: Tensor,
        exclude: Tensor | None,
        n_segments: Tensor | None = None,
        removed: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(C,) -> (C, S) log smoothed exit profile (`exit_prior_parts`' first part)."""
        return self.exit_prior_parts(video_ids, exclude, n_segments, removed)[..., 0]

    def exit_prior_parts(
        self,
        video_ids: Tensor,
        exclude: Tensor | None,
        n_segments: Tensor | None = None,
        removed: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(C,) -> (C, S, 3): the log smoothed exit profile, the log of the profile it is
        smoothed toward (the video's evidence is the difference) and log1p(n_v) (the video's
        view count, per slot); ``exclude`` (C,) leaves one view out.

        With ``exit_prior_base == "n_segments"`` the smoothing profile is that of the video's
        segment count ``n_segments`` (C,) (required then); the left-out view is removed from
        the per-N counts too. ``removed`` (training, instead of ``exclude``): (C, S) counts to
        take off the video's counts, (C, S) off its N's (the row's own fold, count_mode
        "kfold") and (C, S) the global profile to use instead (that of the other folds).
        """
        c = cast(Tensor, self.exit_counts)[video_ids]  # (C, S)
        off: Tensor | None = None
        glob: Tensor | None = None
        if removed is not None:
            if exclude is not None:
                raise ValueError("exit_prior takes exclude or removed, not both")
            c = (c - removed[0] * (video_ids > 0).float()[:, None]).clamp(min=0.0)
            off, glob = removed[1], removed[2]
        elif exclude is not None:  # training: the row's own exit is not evidence about itself
            off = self._one_hot(exclude)
            c = (c - off * (video_ids > 0).float()[:, None]).clamp(min=0.0)
        prior, base = self._smoothed(c, off, n_segments, glob, with_base=True)
        count = torch.log1p(c.sum(-1, keepdim=True)).expand_as(prior)
        return torch.stack([prior.log(), base.log(), count], dim=-1)

    def _one_hot(self, exits: Tensor) -> Tensor:
        # (...) exit slots -> (..., S); an exit at S (no slot) is all zeros
        own = nn.functional.one_hot(exits.clamp(0, self.s_max - 1), self.s_max).float()
        return own * (exits < self.s_max).float()[..., None]

    @overload
    def _smoothed(
        self, c: Tensor, off: Tensor | None, n_segments: Tensor | None, glob: Tensor | None = None
    ) -> Tensor: ...

    @overload
    def _smoothed(
        self,
        c: Tensor,
        off: Tensor | None,
        n_segments: Tensor | None,
        glob: Tensor | None,
        with_base: Literal[True],
    ) -> tuple[Tensor, Tensor]: ...

    def _smoothed(
        self,
        c: Tensor,
        off: Tensor | None,
        n_segments: Tensor | None,
        glob: Tensor | None = None,
        with_base: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        # (..., S) exit counts -> the smoothed exit profile (c + a base) / (n + a); ``off``
        # (..., S) is taken off the per-N counts; ``glob`` (..., S) replaces global_exit.
        glob = cast(Tensor, self.global_exit) if glob is None else glob
        base = glob.expand_as(c)
        if self.prior_by_n:
            n = require(n_segments, "n_segments").clamp(0, self.s_max)
            cn = cast(Tensor, self.n_exit_counts)[n]  # (..., S) exit counts of same-N views
            if off is not None:
                cn = (cn - off).clamp(min=0.0)
            base = (cn + glob) / (cn.sum(-1, keepdim=True) + 1.0)
        n_v = c.sum(-1, keepdim=True)
        a: Tensor | float = self.prior_strength
        if self.prior_adapt is not None:  # a learned function of the view count
            log_scale = self.prior_adapt[0] + self.prior_adapt[1] * torch.log1p(n_v)
            a = self.prior_strength * torch.exp(log_scale.clamp(-8.0, 8.0))
        out: Tensor = (c + a * base) / (n_v + a)
        return (out, base.expand_as(out)) if with_base else out

    def user_residual(
        self,
        hist_ids: Tensor,  # (B, H) vocabulary rows, 0 for padding / unknown
        hist_exits: Tensor,  # (B, H) in 0..N
        hist_n: Tensor,  # (B, H) in 1..S
        hist_mask: Tensor,  # (B, H) bool
        target_ids: Tensor | None = None,  # (B,) training: the row's video ...
        target_exits: Tensor | None = None,  # (B,) ... and exit, a fitting row of the counts
        removed: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(B,) R = sum over history views of (watched fraction - the exit prior's expected
        watched fraction) / (views + user_tilt_shrink).

        A history view's expectation leaves its own exit out of its video's and N's counts
        (training rows are in them; a history view that is not a fitting row loses one count
        of another view at its slot instead, an approximation). In training the target row is a
        fitting row as well: a history view of the same video leaves the target's exit out too.
        ``removed`` (training, count_mode "kfold", instead of the target): (B, H, S) counts of
        the target row's fold to take off each history view's video counts, (B, H, S) off its
        N's, (B, H, S) the global profile of the other folds, and (B, H) bool, the history
        views in that fold (already taken off: their own exit is not subtracted again).
        """
        own = self._one_hot(hist_exits)  # (B, H, S)
        c = cast(Tensor, self.exit_counts)[hist_ids]
        known = (hist_ids > 0).float()[..., None]
        off, glob = own, None
        if removed is not None:
            if target_ids is not None:
                raise ValueError("user_residual takes the target or removed, not both")
            fold_v, fold_n, glob, in_fold = removed
            keep = (~in_fold).float()[..., None]  # (B, H, 1) own exit still in the counts
            c = c - fold_v * known - own * keep * known
            off = fold_n + own * keep
        else:
            c = c - own * known
            if target_ids is not None and target_exits is not None:
                same = (hist_ids == target_ids[:, None]) & (hist_ids > 0)  # (B, H)
                c = c - same.float()[..., None] * self._one_hot(target_exits)[:, None, :]
        p = self._smoothed(c.clamp(min=0.0), off, hist_n, glob)  # (B, H, S)
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
        if self.prior_mlp is not None:
            last = cast(nn.Linear, self.prior_mlp[-1])
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self,
        states: list[Tensor],
        video_ids: Tensor,
        n_segments: Tensor,
        slots: Tensor | None = None,
        user_residual: Tensor | None = None,
        prior: Tensor | None = None,
    ) -> Tensor:
        # states: one (C, S, d) per modality -> logits (C, S); with slots (T,): (C, T, d) ->
        # (C, T), the per-slot offsets taken at those slots. user_residual (C,) or (1,): R.
        # prior (C, S, 3): the exit prior's parts to use (exit_prior_parts), default those of
        # all the counts (training.wrapper passes those without the row's own exit).
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
            if prior is None:
                prior = self.exit_prior_parts(video_ids, None, n_segments)
            parts = prior if slots is None else prior.index_select(-2, slots)  # (C, S, 3)
            z = z - self.prior_weight * parts[..., 0]
            if self.prior_mlp is not None:  # the learned per-slot correction
                shape = slot_features(n_segments.clamp(1, self.s_max), self.s_max, slots)
                r = torch.zeros_like(parts[..., :1])
                if user_residual is not None:
                    r = r + user_residual[:, None, None]
                feats = torch.cat([parts, shape, r], dim=-1)  # (C, S, 8)
                z = z + self.prior_mlp(feats).squeeze(-1)
        if self.tilt is not None:
            r = require(user_residual, "user_residual")
            shape = slot_features(n_segments.clamp(1, self.s_max), self.s_max, slots)
            z = z + r[:, None] * (shape @ self.tilt)  # (C, S)
        if self.mask_impossible:
            j = torch.arange(self.s_max, device=z.device) if slots is None else slots
            j = j[None, :]
            z = z.masked_fill(j > n_segments[:, None], IMPOSSIBLE_LOGIT)
        return z


def _at(x: Tensor, slots: Tensor | None) -> Tensor:
    # (C, S) -> (C, T): the columns of a ragged run's slots (all of them without one)
    return x if slots is None else x.index_select(-1, slots)
