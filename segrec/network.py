"""SegRec networks: WideDeep and DIN backbones that score every segment slot, and the integration.

Shape legend:
    B   rows (one user and one candidate video each)
    S   slots on the segment axis (cfg.s_max); a video has N real slots 0..N-1
    S'  slots a backbone scores: S in the slotted modes, 1 in modes "video" and "features"
    F   interest features of mode "features" (N_INTEREST_FEATURES)
    H   history views (the user's previous views, most recent first)
    d   field embedding width (cfg.emb_dim); Dc content feature width

A backbone maps named tensors to per-slot logits ``y`` (B, S'): user, video, position (slot
embedding + an embedding of N; in mode "video" only N, i.e. the duration) and, when
``cfg.content_dim > 0``, per-segment content features. The integration is separate and tiny
(`slot_weights`, `integrate`): ``logit = sum_j w_j y_j`` over the real slots, with ``w``
depending on the mode (reference section 7.3):

    segsum        w_j = 1                                   (no normalisation)
    segmean       w_j = 1 / N                               (ablation: SegRec with constant p)
    segadjust     w_j = a_j, one learned weight per slot shared by all rows, init 1
    itemposition  w = softmax over real slots of the ItemPosition "logits" (see segrec.interest)
    segrec        w = softmax over real slots of the frozen interest logits p
    (optional)    w = softmax(t p) with one learned temperature t (init 1), cfg.learn_temperature
    survival      w_j = P(reach slot j) for j < N and w_N = P(complete) (slot N's own logit
                  scores the completion outcome), normalised to sum 1; P from the interest
                  model's exit distribution q = softmax(-p) over the N + 1 outcomes

Mode "features" is not slotted: the video-level backbone gets `interest_features` of the same
exit distribution (expected and median watched fraction, completion probability, early-exit
mass, normalised entropy, P(watch at least 25 / 50 / 75 %)) as extra dense inputs.

`SegRecModel.forward` returns the video-level *logit*; the loss (BCE with logits) lives in
`segrec.train` and the probability is ``sigmoid(logit)``. Masks use a large finite negative, so
the graph stays finite in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from segrec.config import SegRecConfig

MASK_VALUE = -1e4  # masked softmax logit: exp underflows to exactly 0, never NaN
EMB_STD = 0.01  # reference init: N(0, 0.01) for embeddings


def real_slots(n_segments: Tensor, s_max: int) -> Tensor:
    """(B,) N -> (B, S) bool, True on the video's real slots ``j < N``."""
    j = torch.arange(s_max, device=n_segments.device)
    return j[None, :] < n_segments[:, None]


def outcome_slots(n_segments: Tensor, s_max: int) -> Tensor:
    """(B,) N -> (B, S) bool, True on the outcomes ``j <= N`` (slot N = completion, if N < S)."""
    j = torch.arange(s_max, device=n_segments.device)
    return j[None, :] <= n_segments[:, None]


def exit_probs(logits: Tensor, n_segments: Tensor) -> Tensor:
    """(B, S) the interest model's exit distribution ``softmax(-p)`` over the outcomes ``j <= N``.

    Same rule as `segint.heads.exit_distribution` (the served one): slot N is "watched to the
    end"; a video with N = S has no completion slot.
    """
    mask = outcome_slots(n_segments, logits.shape[1])  # (B, S)
    z = (-logits.float()).masked_fill(~mask, MASK_VALUE)
    return torch.softmax(z, dim=-1) * mask


def survival_weights(logits: Tensor, n_segments: Tensor) -> Tensor:
    """(B, S) ``[P(reach 0), ..., P(reach N-1), P(complete)] / sum``, zero beyond slot N.

    P(reach j) = P(exit slot >= j) includes the completion mass; the completion outcome
    itself gets the weight P(complete) on slot N.
    """
    q = exit_probs(logits, n_segments)  # (B, S)
    reach = 1.0 - torch.cumsum(q, dim=-1) + q  # (B, S): P(exit >= j)
    real = real_slots(n_segments, q.shape[1])
    w = torch.where(real, reach, q)  # slot N: q_N; beyond N: q = 0
    return w / w.sum(dim=-1, keepdim=True).clamp(min=1e-12)


# P(watched fraction >= f) features of mode "features".
SURVIVAL_FRACTIONS = (0.25, 0.5, 0.75)
N_INTEREST_FEATURES = 5 + len(SURVIVAL_FRACTIONS)


def interest_features(
    logits: Tensor, n_segments: Tensor, thresholds: Tensor | None = None
) -> Tensor:
    """(B, S) interest logits -> (B, F) per-candidate summaries of the exit distribution, in [0, 1].

    Columns: expected watched fraction, median watched fraction, completion probability,
    early-exit mass (exit in slot 0), entropy / log(#outcomes), then P(watched fraction >= f)
    for f in SURVIVAL_FRACTIONS. Leaving in slot j < N counts as watching ``(j + 0.5) / N`` of
    the video (mid-segment; the graph knows N, not the duration), completing as 1.

    With ``thresholds`` (S,) (the label's view-ratio threshold t of a video of N segments at
    index N - 1) a last column P(effective) = P(play > t * duration) is the direct estimate of
    the label: the duration is taken as N - 0.5 segments, so the threshold falls at T = t (N - 0.5)
    segments; slot j < N (play uniform within it) counts for ``clamp(j + 1 - T, 0, 1)`` and the
    completion slot for 1. Past 1.0 (0-30 s videos: replays) the completion mass is the closest
    the exit distribution comes: the label is a subset of it.
    """
    q = exit_probs(logits, n_segments)  # (B, S)
    s = q.shape[1]
    n = n_segments.float()[:, None].clamp(min=1.0)  # (B, 1)
    j = torch.arange(s, device=q.device, dtype=torch.float32)[None, :]  # (1, S)
    frac = torch.where(j < n, (j + 0.5) / n, torch.ones_like(j + n))  # (B, S)
    expected = (q * frac).sum(-1)
    median_slot = (torch.cumsum(q, dim=-1) < 0.5).sum(-1, keepdim=True).clamp(max=s - 1)
    median = frac.gather(1, median_slot)[:, 0]
    done = n_segments < s
    completion = torch.where(done, q.gather(1, n_segments.clamp(max=s - 1)[:, None])[:, 0], 0.0)
    outcomes = outcome_slots(n_segments, s).float().sum(-1).clamp(min=2.0)  # (B,)
    entropy = -(q * torch.log(q.clamp(min=1e-12))).sum(-1) / torch.log(outcomes)
    reach = [(q * (frac >= f).float()).sum(-1) for f in SURVIVAL_FRACTIONS]
    cols = [expected, median, completion, q[:, 0], entropy, *reach]
    if thresholds is not None:
        t = thresholds[(n_segments - 1).clamp(min=0, max=s - 1)][:, None]  # (B, 1)
        share = torch.where(j < n, (j + 1.0 - t * (n - 0.5)).clamp(0.0, 1.0), torch.ones_like(q))
        cols.append((q * share).sum(-1))  # q is 0 past slot N
    return torch.stack(cols, dim=-1)  # (B, F)


def interest_weights(logits: Tensor, n_segments: Tensor) -> Tensor:
    """(B, S) softmax of ``logits`` over the real slots; exactly 0 on padding slots."""
    mask = real_slots(n_segments, logits.shape[1])  # (B, S)
    z = logits.float().masked_fill(~mask, MASK_VALUE)
    # Masked slots underflow to 0 already; the product makes it exact even for N = 0 rows.
    return torch.softmax(z, dim=-1) * mask


def slot_weights(
    mode: str,
    n_segments: Tensor,
    s_max: int,
    interest_logits: Tensor | None = None,
    slot_weight: Tensor | None = None,
) -> Tensor:
    """(B, S) integration weights of a slotted mode, zero on padding slots."""
    mask = real_slots(n_segments, s_max).float()  # (B, S)
    if mode == "segsum":
        return mask
    if mode == "segmean":
        return mask / mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
    if mode == "segadjust":
        if slot_weight is None:
            raise ValueError("mode segadjust needs the learned slot weights")
        return slot_weight[None, :] * mask
    if mode in ("segrec", "itemposition", "survival"):
        if interest_logits is None:
            raise ValueError(f"mode {mode} needs interest_logits (B, S)")
        if mode == "survival":
            return survival_weights(interest_logits, n_segments)
        return interest_weights(interest_logits, n_segments)
    raise ValueError(f"no slot weights for mode {mode!r}")


def integrate(y: Tensor, weights: Tensor) -> Tensor:
    """(B, S) slot logits, (B, S) weights -> (B,) video-level logit ``sum_j w_j y_j``."""
    return (y * weights).sum(dim=-1)


class PReLU(nn.Module):
    """PReLU over the *last* axis (torch's nn.PReLU uses axis 1, wrong for (B, S, H, C))."""

    def __init__(self, width: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((width,), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, self.alpha * x)


class Dice(nn.Module):
    """DIN's data-adaptive activation: ``p x + (1 - p) alpha x``, ``p = sigmoid(norm(x))``.

    ``norm`` standardises each channel with batch statistics in training and running ones in
    eval (BatchNorm without affine terms), written out so that batches of 0 or 1 rows (e.g. no
    history anywhere in a batch) stay finite instead of raising.
    """

    def __init__(self, width: int, momentum: float = 0.1, eps: float = 1e-8):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(width))
        self.running_mean: Tensor
        self.running_var: Tensor
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            flat = x.reshape(-1, x.shape[-1])  # (rows, C)
            n = max(flat.shape[0], 1)
            mean = flat.sum(0) / n
            var = ((flat - mean) ** 2).sum(0) / n
            if flat.shape[0] > 1:
                with torch.no_grad():
                    m = self.momentum
                    unbiased = var * flat.shape[0] / (flat.shape[0] - 1)
                    self.running_mean.mul_(1 - m).add_(m * mean)
                    self.running_var.mul_(1 - m).add_(m * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) / torch.sqrt(var + self.eps))
        return p * x + (1 - p) * self.alpha * x


def mlp(in_dim: int, hidden: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """Linear -> activation -> dropout per hidden width, then a Linear to one logit."""
    layers: list[nn.Module] = []
    for width in hidden:
        act: nn.Module = {"relu": nn.ReLU(), "dice": Dice(width), "prelu": PReLU(width)}[activation]
        layers += [nn.Linear(in_dim, width), act, nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


class Fields(nn.Module):
    """Field embeddings: user, video, position (slot j + segment count N), content."""

    def __init__(self, cfg: SegRecConfig):
        super().__init__()
        d = cfg.emb_dim
        self.user = nn.Embedding(cfg.n_users, d)
        self.video = nn.Embedding(cfg.n_videos, d)
        self.length = nn.Embedding(cfg.s_max + 1, d)  # N in 1..S
        self.slot = nn.Embedding(cfg.s_max, d) if cfg.slotted else None
        self.content = nn.Linear(cfg.content_dim, d) if cfg.content_dim else None
        for emb in (self.user, self.video, self.length, self.slot):
            if emb is not None:
                nn.init.normal_(emb.weight, std=EMB_STD)
        self.s_max = cfg.s_max

    @property
    def n_target_fields(self) -> int:
        """Fields per slot besides the user: video, position (+ content)."""
        return 2 + (self.content is not None)

    def target(
        self, video_ids: Tensor, n_segments: Tensor, video_content: Tensor | None
    ) -> list[Tensor]:
        """Per-slot target fields, each (B, S', d): [video, position(, content)]."""
        pos = self.length(n_segments)[:, None, :]  # (B, 1, d)
        if self.slot is not None:
            pos = pos + self.slot.weight[None]  # (B, S, d)
        fields = [self.video(video_ids)[:, None, :].expand_as(pos), pos]
        if self.content is not None:
            if video_content is None:
                raise ValueError("this model has a content field: pass video_content (B, S, Dc)")
            c = torch.relu(self.content(video_content))  # (B, S, d)
            if self.slot is None:  # video mode: mean over the real segments
                mask = real_slots(n_segments, self.s_max).float()[..., None]  # (B, S, 1)
                c = (c * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
            fields.append(c)
        return fields


def n_dense(cfg: SegRecConfig) -> int:
    """F: dense inputs of the backbone (the interest features in mode "features", else 0)."""
    if cfg.mode != "features":
        return 0
    return N_INTEREST_FEATURES + (1 if cfg.effective_thresholds else 0)


class WideDeep(nn.Module):
    """Wide (bias + per-field linear terms) + deep (MLP over [e_u, e_v, e_pos(, e_c)(, f)]) per slot."""

    def __init__(self, cfg: SegRecConfig):
        super().__init__()
        self.fields = Fields(cfg)
        f = n_dense(cfg)
        self.deep = mlp(
            (1 + self.fields.n_target_fields) * cfg.emb_dim + f, cfg.hidden, "relu", cfg.dropout
        )
        self.wide_dense = nn.Linear(f, 1, bias=False) if f else None
        self.wide_user = nn.Embedding(cfg.n_users, 1)
        self.wide_video = nn.Embedding(cfg.n_videos, 1)
        self.wide_length = nn.Embedding(cfg.s_max + 1, 1)
        self.wide_slot = nn.Parameter(torch.zeros(cfg.s_max)) if cfg.slotted else None
        self.wide_content = nn.Linear(cfg.content_dim, 1) if cfg.content_dim else None
        for emb in (self.wide_user, self.wide_video, self.wide_length):
            nn.init.zeros_(emb.weight)

    def forward(
        self,
        user_ids: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        video_content: Tensor | None = None,
        dense: Tensor | None = None,
    ) -> Tensor:  # -> (B, S')
        target = self.fields.target(video_ids, n_segments, video_content)  # each (B, S', d)
        user = self.fields.user(user_ids)[:, None, :].expand_as(target[0])  # (B, S', d)
        extra = _dense_fields(dense, self.wide_dense is not None, target[0].shape[1])
        deep = self.deep(torch.cat([user, *target, *extra], dim=-1)).squeeze(-1)  # (B, S')
        wide = (
            self.wide_user(user_ids) + self.wide_video(video_ids) + self.wide_length(n_segments)
        )  # (B, 1)
        if self.wide_dense is not None and dense is not None:
            wide = wide + self.wide_dense(dense)  # (B, 1)
        if self.wide_slot is not None:
            wide = wide + self.wide_slot[None, :]  # (B, S)
        if self.wide_content is not None and video_content is not None:
            c = self.wide_content(video_content).squeeze(-1)  # (B, S)
            wide = wide + (c if self.wide_slot is not None else c.mean(1, keepdim=True))
        return deep + wide


class SplitFirstLayer(nn.Module):
    """DIN's attention-unit first layer, ``W [q, k, q - k, q * k] + b`` (4d -> width), as
    ``(W1 + W3) q + (W2 - W3) k + W4 (q * k) + b``: the q and k terms are computed once per
    slot and once per history view and gathered per pair, so each (slot, view) pair pays for
    one d -> width product instead of a 4d -> width one and no concatenation. Inference only;
    the weights are copied from the trained layer (`DIN.split_first_layer`)."""

    def __init__(self, first: nn.Linear):
        super().__init__()
        width, four_d = first.weight.shape
        d = four_d // 4
        w = first.weight.detach()
        w1, w2, w3, w4 = (w[:, i * d : (i + 1) * d] for i in range(4))
        self.q, self.k, self.pair = (
            nn.Linear(d, width),
            nn.Linear(d, width, bias=False),
            nn.Linear(d, width, bias=False),
        )
        with torch.no_grad():
            self.q.weight.copy_(w1 + w3)
            self.k.weight.copy_(w2 - w3)
            self.pair.weight.copy_(w4)
            if first.bias is not None:
                self.q.bias.copy_(first.bias)
            else:
                self.q.bias.zero_()

    def forward(
        self,
        q: Tensor,  # (B, S', d)
        k: Tensor,  # (B, H, d)
        qp: Tensor,  # (P, d) = q[b_idx, j_idx]
        kp: Tensor,  # (P, d) = k[b_idx, h_idx]
        b_idx: Tensor,
        j_idx: Tensor,
        h_idx: Tensor,
    ) -> Tensor:  # (P, width)
        out: Tensor = self.q(q)[b_idx, j_idx] + self.k(k)[b_idx, h_idx] + self.pair(qp * kp)
        return out


class DIN(nn.Module):
    """Per-slot target attention over the user's history (Deep Interest Network), then an MLP.

    The target of slot j is ``e_v + e_pos(j)`` (+ content); a history view is ``e_v(view) +
    e_N(view) + Linear([exit/N, 1[watched to the end]])`` - which video and how it ended. The
    attention unit scores ``[q, k, q - k, q * k]``; as in DIN the scores are not softmax-ed
    (they keep the intensity of interest) and padded history views score 0.
    """

    def __init__(self, cfg: SegRecConfig):
        super().__init__()
        d = cfg.emb_dim
        self.fields = Fields(cfg)
        self.outcome = nn.Linear(2, d)
        self.attention = mlp(4 * d, cfg.att_hidden, cfg.activation, 0.0)
        n_in = (2 + self.fields.n_target_fields) * d  # user, target fields, attended history
        self.n_dense = n_dense(cfg)
        # dense features into the MLP, or (cfg.dense_linear) a linear term on the logit, or
        # (cfg.dense_both) both
        linear = cfg.dense_linear or cfg.dense_both
        self.dense_linear = nn.Linear(self.n_dense, 1, bias=False) if linear else None
        self.dense_in_mlp = cfg.dense_both or not linear
        n_mlp_dense = self.n_dense if self.dense_in_mlp else 0
        self.out = mlp(n_in + n_mlp_dense, cfg.hidden, cfg.activation, cfg.dropout)
        # Mode survival also scores slot N (the completion outcome).
        self.with_completion = cfg.mode == "survival"
        self.split_first: SplitFirstLayer | None = None  # inference form (split_first_layer)

    def split_first_layer(self) -> None:
        """Inference only (the exported CTR head, `export.ctr.export_head`): the attention
        unit's first layer runs as `SplitFirstLayer`, same scores within float rounding."""
        first = self.attention[0]
        if not isinstance(first, nn.Linear):
            raise TypeError(f"the attention unit starts with {type(first).__name__}")
        self.split_first = SplitFirstLayer(first)

    def forward(
        self,
        user_ids: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        video_content: Tensor | None = None,
        dense: Tensor | None = None,
    ) -> Tensor:  # -> (B, S')
        f = self.fields
        target = f.target(video_ids, n_segments, video_content)  # each (B, S', d)
        q = target[0] + target[1]  # (B, S', d)
        exit_frac = hist_exit_slots.float() / hist_n_segments.clamp(min=1).float()  # (B, H)
        done = (hist_exit_slots >= hist_n_segments).float()
        k = (
            f.video(hist_video_ids)
            + f.length(hist_n_segments)
            + self.outcome(torch.stack([exit_frac, done], dim=-1))
        )  # (B, H, d)
        b, s, d = q.shape
        if s == 1:  # video mode: the one "slot" is the whole video
            slot_real = torch.ones(b, 1, dtype=torch.bool, device=q.device)
        elif self.with_completion:
            slot_real = outcome_slots(n_segments, s)  # (B, S)
        else:
            slot_real = real_slots(n_segments, s)  # (B, S)
        pairs = slot_real[:, :, None] & hist_mask[:, None, :]  # (B, S', H)
        interest = self.attend(q, k, pairs)  # (B, S', d)
        user = f.user(user_ids)[:, None, :].expand(b, s, d)
        extra = _dense_fields(dense, self.n_dense > 0 and self.dense_in_mlp, s)
        y = self.out(torch.cat([user, *target, interest, *extra], dim=-1)).squeeze(-1)
        if self.dense_linear is not None:
            if dense is None:
                raise ValueError("this backbone takes dense interest features (B, F)")
            return y + self.dense_linear(dense)  # (B, 1): S' = 1 in mode features
        return y

    def attend(self, q: Tensor, k: Tensor, pairs: Tensor) -> Tensor:
        """``sum_h a(q_bj, k_bh) k_bh`` over the real (row, slot, history) pairs only.

        Args: q (B, S', d) slot targets, k (B, H, d) history views, pairs (B, S', H) bool.
        Computing on the P real pairs instead of the dense B x S' x H grid is the difference
        between seconds and tens of milliseconds per batch: most slots are padding and most
        users have a short history. Padding slots get a zero vector (their y is never used).
        """
        b_idx, j_idx, h_idx = torch.nonzero(pairs, as_tuple=True)  # each (P,)
        qp, kp = q[b_idx, j_idx], k[b_idx, h_idx]  # (P, d)
        if self.split_first is None:
            score = self.attention(torch.cat([qp, kp, qp - kp, qp * kp], dim=-1))  # (P, 1)
        else:
            z = self.split_first(q, k, qp, kp, b_idx, j_idx, h_idx)  # (P, width)
            score = self.attention[1:](z)  # (P, 1)
        out = torch.zeros_like(q)
        return out.index_put((b_idx, j_idx), score * kp, accumulate=True)  # (B, S', d)


def _dense_fields(dense: Tensor | None, expected: bool, slots: int) -> list[Tensor]:
    """``[dense (B, S', F)]`` for a backbone with dense inputs, ``[]`` without."""
    if not expected:
        return []
    if dense is None:
        raise ValueError("this backbone takes dense interest features (B, F)")
    return [dense[:, None, :].expand(-1, slots, -1)]


def dense_statistics(
    cfg: SegRecConfig, logits: npt.NDArray[np.float32], n_segments: npt.NDArray[np.int64]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-column mean and standard deviation (floored at 1e-3) of mode features' dense inputs
    over the given rows (the training rows'): ``cfg.dense_center`` / ``cfg.dense_scale``."""
    t = torch.tensor(cfg.effective_thresholds) if cfg.effective_thresholds else None
    f = interest_features(torch.from_numpy(logits), torch.from_numpy(n_segments), t).double()
    centre, scale = f.mean(0), f.std(0, unbiased=False).clamp(min=1e-3)
    return tuple(round(float(v), 6) for v in centre), tuple(round(float(v), 6) for v in scale)


class SegRecModel(nn.Module):
    """Backbone + integration: named tensors -> video-level CTR logit (B,)."""

    def __init__(self, cfg: SegRecConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = WideDeep(cfg) if cfg.backbone == "widedeep" else DIN(cfg)
        # SegAdjust: one weight per slot shared by all rows, initialised to SegSum.
        self.slot_weight = nn.Parameter(torch.ones(cfg.s_max)) if cfg.mode == "segadjust" else None
        # Optional sharpness of the interest weights, log-parametrised so that t stays > 0.
        self.log_temperature = nn.Parameter(torch.zeros(())) if cfg.learn_temperature else None
        # Constants of the config, not weights: kept out of the state dict (persistent=False).
        thresholds = torch.tensor(cfg.effective_thresholds, dtype=torch.float32)
        self.register_buffer("effective_thresholds", thresholds, persistent=False)
        if cfg.dense_center and len(cfg.dense_center) != n_dense(cfg):
            raise ValueError(
                f"dense_center has {len(cfg.dense_center)} values, the model {n_dense(cfg)} "
                "dense features"
            )
        centre = torch.tensor(cfg.dense_center, dtype=torch.float32)
        scale = torch.tensor(cfg.dense_scale, dtype=torch.float32)
        self.register_buffer("dense_center", centre, persistent=False)
        self.register_buffer("dense_scale", scale, persistent=False)

    def dense_inputs(self, interest_logits: Tensor, n_segments: Tensor) -> Tensor:
        """(B, F) the backbone's dense inputs in mode features: `interest_features`, then
        ``(f - centre) / scale`` when the config has them."""
        t = self.get_buffer("effective_thresholds") if self.cfg.effective_thresholds else None
        dense = interest_features(interest_logits, n_segments, t)  # (B, F)
        if self.cfg.dense_center:
            dense = (dense - self.get_buffer("dense_center")) / self.get_buffer("dense_scale")
        return dense

    def slot_logits(
        self,
        user_ids: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        video_content: Tensor | None = None,
        dense: Tensor | None = None,
    ) -> Tensor:
        """Per-slot backbone logits ``y`` (B, S') (S' = 1 in modes video and features)."""
        y: Tensor = self.backbone(
            user_ids,
            video_ids,
            n_segments,
            hist_video_ids,
            hist_exit_slots,
            hist_n_segments,
            hist_mask,
            video_content,
            dense,
        )
        return y

    def forward(
        self,
        user_ids: Tensor,  # (B,) int64
        video_ids: Tensor,  # (B,) int64
        n_segments: Tensor,  # (B,) int64, 1..S
        hist_video_ids: Tensor,  # (B, H) int64
        hist_exit_slots: Tensor,  # (B, H) int64
        hist_n_segments: Tensor,  # (B, H) int64, >= 1
        hist_mask: Tensor,  # (B, H) bool
        interest_logits: Tensor | None = None,  # (B, S) float32, weighting / features modes
        video_content: Tensor | None = None,  # (B, S, Dc) float32, when cfg.content_dim > 0
    ) -> Tensor:  # -> (B,) logit
        dense = None
        if self.cfg.mode == "features":
            if interest_logits is None:
                raise ValueError("mode features needs interest_logits (B, S)")
            dense = self.dense_inputs(interest_logits, n_segments)  # (B, F)
        y = self.slot_logits(
            user_ids,
            video_ids,
            n_segments,
            hist_video_ids,
            hist_exit_slots,
            hist_n_segments,
            hist_mask,
            video_content,
            dense,
        )
        if not self.cfg.slotted:
            return self.calibrate(y[:, 0])
        if self.log_temperature is not None and interest_logits is not None:
            interest_logits = interest_logits * self.log_temperature.exp()
        w = slot_weights(
            self.cfg.mode, n_segments, self.cfg.s_max, interest_logits, self.slot_weight
        )
        return self.calibrate(integrate(y, w))

    def calibrate(self, logit: Tensor) -> Tensor:
        """(B,) Platt scaling ``a * logit + b`` of the config (skipped when it is the identity)."""
        a, b = self.cfg.calibration
        return logit if (a, b) == (1.0, 0.0) else logit * a + b
