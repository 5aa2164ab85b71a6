"""An inference-only form of the encoder's cross-attention for the exported scorer: same
outputs, fewer and larger operators.

`model.network.CrossAttention` gives each key source its own query map and joins the sources'
attention logits in one softmax: per source a query projection, a key and a value projection,
a masked fill, then a concatenation of the logits and one slice per source after the softmax.
`FusedCrossAttention` computes the same function with:

- one query projection for all sources (weights stacked, the 1/sqrt(dh) scale folded in);
- one key+value projection per source (weights stacked);
- the keys of all sources in one tensor, each source's keys zero-padded into its own block of
  a (n_sources * dh)-wide key space, so ``[q_1, q_2] . [k_1, 0]`` = ``q_1 . k_1``: one logits
  matmul, one mask, one softmax, one matmul with the joined values, no slicing.

The served scorer (`FusedVideoBlock`, round 7) goes further: a deferred softmax,
``softmax(s) @ V = (exp(s) @ [V, 1])[:dh] / (exp(s) @ [V, 1])[dh]`` per source, the masked
keys' rows of ``[V, 1]`` set to zero. It needs no max subtraction because every block reads
LayerNorm outputs, so the logits have a bound computed from the weights at export
(`attention_logit_bound`); a model whose bound passes ``DEFERRED_LOGIT_LIMIT`` keeps the
explicit softmax.

Weights are copied from a trained module; nothing is learned here. Parity with the padded
PyTorch model is the scorer's parity test (tests/export/test_onnx.py, 1e-5).

Shapes: ``B`` query rows, ``T`` query tokens, ``K_i`` keys of source i, ``h`` heads, ``dh``
head width, ``n`` sources, ``d = h * dh``.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, cast

import torch
from torch import Tensor, nn

from model.decoder import InterestDecoder
from model.network import (
    MASK_VALUE,
    CrossAttention,
    CrossAttentionBlock,
    ModalityEncoder,
    SegmentInterestModel,
)

log = logging.getLogger(__name__)

# The deferred softmax takes exp of the raw logits: with every |logit| <= 60, exp stays in
# [8.8e-27, 1.2e26], normal float32 numbers, and sums of a few hundred such terms (times the
# values) stay far below float32's 3.4e38.
DEFERRED_LOGIT_LIMIT = 60.0


class FusedCrossAttention(nn.Module):
    """`CrossAttention` (eval mode, no logit dropout) with stacked projections."""

    def __init__(self, attn: CrossAttention):
        super().__init__()
        d = attn.out.in_features
        self.n, self.h, self.dh = len(attn.q), attn.n_heads, d // attn.n_heads
        qs = [cast(nn.Linear, q) for q in attn.q]
        ks = [cast(nn.Linear, k) for k in attn.k]
        vs = [cast(nn.Linear, v) for v in attn.v]
        with torch.no_grad():
            self.q = nn.Linear(d, self.n * d)  # all sources' queries, pre-scaled
            self.q.weight.copy_(torch.cat([q.weight for q in qs]) * attn.scale)
            self.q.bias.copy_(torch.cat([q.bias for q in qs]) * attn.scale)
            self.kv = nn.ModuleList()
            for k, v in zip(ks, vs, strict=True):
                kv = nn.Linear(d, 2 * d)
                kv.weight.copy_(torch.cat([k.weight, v.weight]))
                kv.bias.copy_(torch.cat([k.bias, v.bias]))
                self.kv.append(kv)
        self.out = attn.out

    def forward(self, x: Tensor, sources: list[tuple[Tensor, Tensor]]) -> Tensor:
        b, t, _ = x.shape
        n, h, dh = self.n, self.h, self.dh
        # (B, T, n d) -> (B, h, T, n dh): head j's query of source i at [i dh, (i + 1) dh)
        q = self.q(x).view(b, t, n, h, dh).permute(0, 3, 1, 2, 4).reshape(b, h, t, n * dh)
        keys, values, masks = [], [], []
        for i, (proj, (tokens, mask)) in enumerate(zip(self.kv, sources, strict=True)):
            bk, k_len, _ = tokens.shape
            k, v = proj(tokens).view(bk, k_len, 2, h, dh).permute(2, 0, 3, 1, 4)  # (Bk, h, K, dh)
            k = nn.functional.pad(k, (i * dh, (n - 1 - i) * dh))  # (Bk, h, K, n dh)
            keys.append(k.expand(b, -1, -1, -1))
            values.append(v.expand(b, -1, -1, -1))
            masks.append(mask.expand(b, -1))
        att = q @ torch.cat(keys, dim=2).transpose(-2, -1)  # (B, h, T, sum K)
        att = att.masked_fill(~torch.cat(masks, dim=1)[:, None, None, :], MASK_VALUE)
        y = att.softmax(dim=-1) @ torch.cat(values, dim=2)  # (B, h, T, dh)
        out: Tensor = self.out(y.transpose(1, 2).flatten(2))  # (B, T, d)
        return out


LAYOUTS = ("heads_first", "heads_first_3d", "stacked", "token_major")


def fused_copy(
    model: SegmentInterestModel,
    layout: str = "heads_first",
    tilt: str = "elementwise",
    values: str = "joined",
    unbind: str = "split",
    softmax: str = "deferred",
) -> SegmentInterestModel:
    """A copy of ``model`` (eval mode) for the exported scorer; the user blocks (the cached
    user encoder) are left as they are.

    ``layout``: ``heads_first`` (default): each modality's video side is a
    `FusedVideoEncoder`; ``heads_first_3d``: the same on (C, T, d) tokens (the round-2
    export); ``stacked``: the video blocks' attention is `FusedCrossAttention` (the round-1
    export); ``token_major``:
    `TokenMajorVideoEncoder` (measured, not served). Either is ``model`` itself when the
    reference quirk's logit dropout is on (it sits between logits and softmax).

    ``tilt``: ``elementwise`` (default): the decoder's user tilt is `ElementwiseTiltDecoder`;
    ``matmul``: the model's own (a (C, T, 4) @ (4,) MatMul; the bench's "before").

    ``values`` (heads-first layouts): ``joined`` (default): both sources' values in one
    tensor, one product with the whole softmax (`FusedVideoBlock`); ``split``: the softmax
    sliced per source, two products (the round-2 and round-3 export).

    ``softmax`` (``heads_first`` layout): ``deferred`` (default): exp of the logits with no
    max subtraction, normalised after the products (`FusedVideoBlock`), used only when
    `attention_logit_bound` proves every logit of the model is within
    ``DEFERRED_LOGIT_LIMIT`` (else the explicit form, logged); ``explicit``: the softmax of
    the concatenated, masked logits (rounds 2-6).
    """
    if softmax not in ("deferred", "explicit"):
        raise ValueError(f"softmax must be deferred or explicit, got {softmax!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if values not in ("joined", "split"):
        raise ValueError(f"values must be joined or split, got {values!r}")
    if unbind not in ("split", "slice"):
        raise ValueError(f"unbind must be split or slice, got {unbind!r}")
    if tilt not in ("elementwise", "matmul"):
        raise ValueError(f"tilt must be elementwise or matmul, got {tilt!r}")
    cfg = model.cfg
    if cfg.attn_logit_dropout:
        return model
    fused = copy.deepcopy(model).eval()
    if tilt == "elementwise" and fused.decoder.tilt is not None:
        fused.decoder = ElementwiseTiltDecoder(fused.decoder)  # type: ignore[assignment]
    deferred = softmax == "deferred" and layout == "heads_first" and cfg.user_stream == "self"
    if deferred:
        form = scorer_softmax(model)
        deferred = form["softmax"] == "deferred"
        if deferred:
            log.info("scorer: deferred softmax (attention logits bounded by %.1f)", form["bound"])
        else:
            log.warning(
                "attention logits are bounded by %.1f only (> %.0f): the scorer keeps the "
                "explicit softmax",
                form["bound"],
                DEFERRED_LOGIT_LIMIT,
            )
    for name, enc in fused.encoders.items():
        enc = cast(ModalityEncoder, enc)
        if layout in ("heads_first", "heads_first_3d") and cfg.user_stream == "self":
            fused.encoders[name] = FusedVideoEncoder(
                enc,
                rows_2d=layout == "heads_first",
                joined_values=values == "joined",
                split=unbind == "split",
                deferred=deferred,
            )
            continue
        if layout == "token_major" and cfg.user_stream == "self":
            fused.encoders[name] = TokenMajorVideoEncoder(enc)
            continue
        for block in cast(nn.ModuleList, enc.video):
            block.attn = FusedCrossAttention(cast(CrossAttention, block.attn))
    return fused


def scorer_softmax(model: SegmentInterestModel) -> dict[str, Any]:
    """The softmax form the served scorer of ``model`` gets (`fused_copy`'s default) and why:
    ``{"softmax": "deferred" | "explicit", "bound": attention_logit_bound, "limit":
    DEFERRED_LOGIT_LIMIT}``; the export records it in the manifest's ``source``."""
    bound = attention_logit_bound(model)
    deferred = (
        model.cfg.user_stream == "self"
        and not model.cfg.attn_logit_dropout
        and bound <= DEFERRED_LOGIT_LIMIT
    )
    return {
        "softmax": "deferred" if deferred else "explicit",
        "bound": round(bound, 4),
        "limit": DEFERRED_LOGIT_LIMIT,
    }


def attention_logit_bound(model: SegmentInterestModel) -> float:
    """An upper bound on |logit| of every attention of the scorer's video blocks, from the
    weights alone: every block reads LayerNorm outputs (the embeddings end in
    ``video_norm`` / ``user_norm``, every block in ``norm2``), whose Euclidean norm is at most
    ``max|gamma| sqrt(d) + ||beta||``; a head's query and key are then at most
    ``||W_head||_2 X + ||b_head||`` long, and the logit is at most their product (times the
    attention's scale). Cached user states are the user encoder's LayerNorm outputs too (the
    tilt's carrier token is taken off before attending)."""
    with torch.no_grad():

        def norm_bound(norm: nn.LayerNorm) -> float:
            d = norm.normalized_shape[-1]
            gamma = 1.0 if norm.weight is None else float(norm.weight.abs().max())
            beta = 0.0 if norm.bias is None else float(norm.bias.double().norm())
            return gamma * math.sqrt(d) + beta

        def head_bounds(lin: nn.Module, x: float, h: int) -> Tensor:
            lin = cast(nn.Linear, lin)
            w = lin.weight.double().reshape(h, -1, lin.in_features)
            out: Tensor = torch.linalg.matrix_norm(w, ord=2) * x  # (h,)
            if lin.bias is not None:
                out = out + lin.bias.double().reshape(h, -1).norm(dim=-1)
            return out

        bound = 0.0
        for name, enc in model.encoders.items():
            enc = cast(ModalityEncoder, enc)
            emb = model.embeddings[name]
            x_v = norm_bound(cast(nn.LayerNorm, emb.video_norm))
            x_u = [norm_bound(cast(nn.LayerNorm, emb.user_norm))]
            x_u += [norm_bound(cast(CrossAttentionBlock, b).norm2) for b in enc.user]
            for i, block in enumerate(enc.video[: enc.n_run]):
                block = cast(CrossAttentionBlock, block)
                attn = cast(CrossAttention, block.attn)
                h, scale = attn.n_heads, float(attn.scale)
                for src, x_k in ((0, x_v), (1, x_u[i])):
                    q = head_bounds(attn.q[src], x_v, h) * scale
                    k = head_bounds(attn.k[src], x_k, h)
                    bound = max(bound, float((q * k).max()))
                x_v = norm_bound(block.norm2)
        return bound


class FusedVideoBlock(nn.Module):
    """A video `CrossAttentionBlock` (two sources: the video's own tokens, then the user's) as
    few, large operators, heads first.

    - One projection of ``x`` gives both sources' queries (scaled), the video keys and values.
    - Tensors are laid out (h, C, T, dh): the user source's keys and values (one user, batch
      1) are then a plain (h, C T, dh) @ (h, dh, M) GEMM per head, with no copy of the user's
      keys per candidate, and one Transpose splits all heads of q, k and v at once.
    - The key mask is an additive bias (1, C, 1, T + M) computed once per run by the encoder
      (`FusedVideoEncoder`), not a Where per layer. A masked logit is ``x - 1e4`` instead of
      ``-1e4``: both softmax to exactly 0 in float32 (no query has only masked keys).
    - The projections, norms and feed-forward map run on 2-D (C T, d) rows (Gemm with the
      bias inside).
    - ``joined_values``: the user's values are broadcast per candidate and put after the
      video's, (h, C, T + M, dh), so one batched product with the whole softmax gives the
      output: the softmax is not sliced (two copies of the largest tensor of the block), and
      the copy of the values is 2 dh / T times smaller than those slices (round 4). Without
      it, each source's slice of the softmax has its own product (round 3).
    - ``split``: the stacked q, q_user, k, v (and the user's k, v) are taken apart with one
      Split each (round 4), not the Slice + Squeeze per tensor that unpacking a tensor
      exports as (round 3).
    - ``deferred`` (round 7, 2-D rows; `_forward_deferred`): no softmax. Each source's exp'd
      logits multiply its values with a constant-1 channel, ``[V, 1]``, masked keys' rows
      zero; the two products are added and the value part divided by the 1 channel. The key
      mask is then a (1, C, T, 1) 0/1 factor of the video values, and ``joined_values`` is
      moot. `fused_copy` sets it only for models whose logits `attention_logit_bound` keeps
      within ``DEFERRED_LOGIT_LIMIT``.
    """

    def __init__(
        self,
        block: CrossAttentionBlock,
        rows_2d: bool = True,
        joined_values: bool = True,
        split: bool = True,
        deferred: bool = False,
    ):
        super().__init__()
        self.joined_values, self.split, self.deferred = joined_values, split, deferred
        if deferred and not rows_2d:
            raise ValueError("the deferred softmax is written for 2-D token rows")
        attn = cast(CrossAttention, block.attn)
        if len(attn.q) != 2:
            raise ValueError(f"a video block has 2 key sources, got {len(attn.q)}")
        d = attn.out.in_features
        self.h, self.dh = attn.n_heads, d // attn.n_heads
        self.rows_2d = rows_2d
        q, k, v = (cast(list[nn.Linear], list(m)) for m in (attn.q, attn.k, attn.v))
        with torch.no_grad():
            # rows: [q_video * scale, q_user * scale, k_video, v_video]
            self.qkv = nn.Linear(d, 4 * d)
            self.qkv.weight.copy_(
                torch.cat(
                    [q[0].weight * attn.scale, q[1].weight * attn.scale, k[0].weight, v[0].weight]
                )
            )
            self.qkv.bias.copy_(
                torch.cat([q[0].bias * attn.scale, q[1].bias * attn.scale, k[0].bias, v[0].bias])
            )
            self.user_kv = nn.Linear(d, 2 * d)  # the user source's key and value maps
            self.user_kv.weight.copy_(torch.cat([k[1].weight, v[1].weight]))
            self.user_kv.bias.copy_(torch.cat([k[1].bias, v[1].bias]))
            if deferred:
                # two maps, so that no Split copies the projection's output: [q_video *
                # scale, q_user * scale, k_video], and per head [v_video, 1] (the constant-1
                # channel: zero weights, bias 1), whose product with the exp'd logits is the
                # softmax's denominator
                h, dh = self.h, self.dh
                w1 = torch.zeros(h, dh + 1, d)
                w1[:, :dh] = v[0].weight.view(h, dh, d)
                b1 = torch.ones(h, dh + 1)
                b1[:, :dh] = v[0].bias.view(h, dh)
                qk = nn.Linear(d, 3 * d)
                qk.weight.copy_(self.qkv.weight[: 3 * d])
                qk.bias.copy_(self.qkv.bias[: 3 * d])
                self.qkv = qk
                self.v1 = nn.Linear(d, h * (dh + 1))
                self.v1.weight.copy_(w1.reshape(-1, d))
                self.v1.bias.copy_(b1.reshape(-1))
        self.out, self.norm1, self.norm2, self.ffn = attn.out, block.norm1, block.norm2, block.ffn

    def user_keys(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """(1, M, d) user states -> keys (h, dh, M) and values (h, M, dh), once per run."""
        m = states.shape[1]
        # kept 3-D: a 2-D input exports as Gemm, on which ORT's int8 quantiser's shape
        # inference fails ("Inferred shape and existing shape differ")
        k, v = self._unbind(self.user_kv(states).view(m, 2, self.h, self.dh).permute(1, 2, 0, 3))
        return k.transpose(1, 2), v

    @staticmethod
    def counted_values(v: Tensor, keep: Tensor) -> Tensor:
        """Deferred softmax: values (h, M, dh) and key mask (M,) -> (h, M, dh + 1), the
        constant-1 channel appended and masked keys' rows zero (they add nothing to the
        weighted sum or to the denominator)."""
        ones = torch.ones_like(v[..., :1])
        return torch.cat([v, ones], dim=-1) * keep.to(v.dtype)[None, :, None]

    def _unbind(self, x: Tensor) -> list[Tensor]:
        """The tensors stacked on ``x``'s first axis."""
        if self.split:
            return [part.squeeze(0) for part in x.split(1)]  # Split + Squeeze (a view)
        return list(x.unbind(0))

    def forward(self, x: Tensor, bias: Tensor, user_k: Tensor, user_v: Tensor) -> Tensor:
        """``bias``: the additive key mask (1, C, 1, T + M); deferred: the video keys' 0/1
        mask (1, C, T, 1), and ``user_v`` the counted values (`counted_values`)."""
        if self.deferred:
            return self._forward_deferred(x, bias, user_k, user_v)
        c, t, d = x.shape
        h, dh = self.h, self.dh
        # The token-wise maps run on (C T, d) rows: a 2-D Linear exports as Gemm (a 3-D one as
        # MatMul + Add); measured faster in ONNX Runtime (bench lever fp32_3d)
        rows = (c * t, d) if self.rows_2d else (c, t, d)
        if self.rows_2d:
            x = x.reshape(rows)
        # (C T, 4d) -> 4 x (h, C, T, dh): one Transpose for every head of every tensor
        qv, qu, k, v = self._unbind(self.qkv(x).view(c, t, 4, h, dh).permute(2, 3, 0, 1, 4))
        att_v = qv @ k.transpose(-2, -1)  # (h, C, T, T)
        att_u = (qu.reshape(h, c * t, dh) @ user_k).view(h, c, t, -1)  # (h, C, T, M)
        p = (torch.cat([att_v, att_u], dim=-1) + bias).softmax(dim=-1)  # (h, C, T, T + M)
        if self.joined_values:
            values = torch.cat([v, user_v[:, None].expand(-1, c, -1, -1)], dim=2)
            y = p @ values  # (h, C, T, T + M) @ (h, C, T + M, dh) -> (h, C, T, dh)
        else:
            y_u = p[..., t:].reshape(h, c * t, -1) @ user_v  # (h, C T, dh)
            y = p[..., :t] @ v + y_u.view(h, c, t, dh)  # (h, C, T, dh)
        x = self.norm1(x + self.out(y.permute(1, 2, 0, 3).reshape(rows)))  # (C T, d)
        out: Tensor = self.norm2(x + self.ffn(x))
        return out.view(c, t, d) if self.rows_2d else out

    def _forward_deferred(self, x: Tensor, keep: Tensor, user_k: Tensor, user_v1: Tensor) -> Tensor:
        """softmax(s) @ V = (exp(s) @ [V, 1])[:dh] / (exp(s) @ [V, 1])[dh] over both sources'
        keys, masked keys' rows of [V, 1] zero: no max subtraction (the logits are bounded,
        `attention_logit_bound`), no concatenated logits, no mask pass over them, no
        normalising pass; the two exp passes are the only element-wise work on logits."""
        c, t, d = x.shape
        h, dh = self.h, self.dh
        x = x.reshape(c * t, d)
        qv, qu, k = self._unbind(self.qkv(x).view(c, t, 3, h, dh).permute(2, 3, 0, 1, 4))
        v1 = self.v1(x).view(c, t, h, dh + 1).permute(2, 0, 1, 3) * keep  # (h, C, T, dh + 1)
        e_v = torch.exp(qv @ k.transpose(-2, -1))  # (h, C, T, T)
        e_u = torch.exp(qu.reshape(h, c * t, dh) @ user_k)  # (h, C T, M)
        num = e_v @ v1 + (e_u @ user_v1).view(h, c, t, dh + 1)  # (h, C, T, dh + 1)
        y, den = num.split([dh, 1], dim=-1)
        y = y / den
        x = self.norm1(x + self.out(y.permute(1, 2, 0, 3).reshape(c * t, d)))  # (C T, d)
        out: Tensor = self.norm2(x + self.ffn(x))
        return out.view(c, t, d)


class FusedVideoEncoder(nn.Module):
    """`ModalityEncoder.encode_video` (self stream, eval mode) over `FusedVideoBlock`s: the
    key-mask bias is computed once for all layers."""

    def __init__(
        self,
        enc: ModalityEncoder,
        rows_2d: bool = True,
        joined_values: bool = True,
        split: bool = True,
        deferred: bool = False,
    ):
        super().__init__()
        self.deferred = deferred
        self.video = nn.ModuleList(
            FusedVideoBlock(cast(CrossAttentionBlock, b), rows_2d, joined_values, split, deferred)
            for b in enc.video[: enc.n_run]
        )

    def encode_video(self, v: Tensor, v_mask: Tensor, states: Tensor, u_mask: Tensor) -> Tensor:
        # v (C, T, d), v_mask (C, T); states (1, L, M, d), u_mask (1, M): one broadcast user
        c = v.shape[0]
        if self.deferred:
            bias = v_mask.to(v.dtype)[None, :, :, None]  # (1, C, T, 1): the video keys' mask
        else:
            keep = torch.cat([v_mask, u_mask.expand(c, -1)], dim=1)  # (C, T + M)
            bias = torch.where(keep, 0.0, MASK_VALUE)[None, :, None, :]  # (1, C, 1, T + M)
        for i, block in enumerate(self.video):
            block = cast(FusedVideoBlock, block)
            user_k, user_v = block.user_keys(states[:, i])
            if self.deferred:
                user_v = block.counted_values(user_v, u_mask[0])
            v = block(v, bias, user_k, user_v)
        return v


class TokenMajorVideoBlock(nn.Module):
    """A video `CrossAttentionBlock` with tensors kept token-major, (C, T, ...): no per-head
    split or merge of q, k, v or y.

    - The user source is folded into two small per-run matrices, once per layer: its keys into
      ``A`` (d, h M) with ``att_u = x A + c`` (the user-key mask in ``c``), its values times
      the output projection into ``B`` (h M, d); ``att_u`` comes out of the same GEMM as the
      video queries.
    - The video keys enter block-diagonally, ``Kbd`` (C, d, h T): head a's rows carry head a's
      keys, so ``q Kbd`` (C, T, h T) is every head's logits at once (zeros elsewhere add exactly
      0).
    - The video values are projected through the output map per head, ``VW`` (C, T, h d), so
      ``p_v VW`` is the block output with the heads already summed.
    """

    w_x: Tensor
    b_x: Tensor
    w_qu: Tensor
    b_qu: Tensor
    w_ukv: Tensor
    b_ukv: Tensor
    wo_heads: Tensor
    head_of_row: Tensor

    def __init__(self, block: CrossAttentionBlock):
        super().__init__()
        attn = cast(CrossAttention, block.attn)
        if len(attn.q) != 2:
            raise ValueError(f"a video block has 2 key sources, got {len(attn.q)}")
        d = attn.out.in_features
        h = attn.n_heads
        dh = d // h
        self.h, self.dh = h, dh
        q, k, v = (cast(list[nn.Linear], list(m)) for m in (attn.q, attn.k, attn.v))
        wo = attn.out.weight  # (d, d): out = y wo^T + bo
        with torch.no_grad():
            # per head a: VW_a = x (wv_a^T wo_a^T) + bv_a wo_a^T, wv_a = rows of head a
            w_vw = torch.cat(
                [
                    v[0].weight[a * dh : (a + 1) * dh].T @ wo[:, a * dh : (a + 1) * dh].T
                    for a in range(h)
                ],
                dim=1,
            )  # (d, h d)
            b_vw = torch.cat(
                [
                    v[0].bias[a * dh : (a + 1) * dh] @ wo[:, a * dh : (a + 1) * dh].T
                    for a in range(h)
                ]
            )
            # x @ w: [q_video * scale | k_video | VW]
            self.register_buffer(
                "w_x", torch.cat([q[0].weight.T * attn.scale, k[0].weight.T, w_vw], dim=1)
            )
            self.register_buffer("b_x", torch.cat([q[0].bias * attn.scale, k[0].bias, b_vw]))
            self.register_buffer("w_qu", q[1].weight.T * attn.scale)  # (d, d)
            self.register_buffer("b_qu", q[1].bias * attn.scale)
            self.register_buffer("w_ukv", torch.cat([k[1].weight, v[1].weight]).T)  # (d, 2d)
            self.register_buffer("b_ukv", torch.cat([k[1].bias, v[1].bias]))
            # (h, dh, d): head a's slice of the output map, for B
            self.register_buffer("wo_heads", wo.T.reshape(h, dh, d).clone())
            # (d, h, 1): row i belongs to head i // dh
            eye = torch.eye(h).repeat_interleave(dh, dim=0)
            self.register_buffer("head_of_row", eye[:, :, None])
        self.bo = attn.out.bias
        self.norm1, self.norm2, self.ffn = block.norm1, block.norm2, block.ffn

    def user_side(self, states: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(1, M, d) user states, (M,) additive key mask -> ``A`` (d, h M), ``c`` (h M,) and
        ``B`` (h M, d), once per run and layer; column / row order (head, user token)."""
        h, dh = self.h, self.dh
        m, d = states.shape[1], states.shape[2]
        uk, uv = (states[0] @ self.w_ukv + self.b_ukv).split(d, dim=1)  # (M, d) each
        uk_heads = uk.view(m, h, dh).permute(1, 2, 0)  # (h, dh, M)
        w_qu = self.w_qu.view(d, h, dh).permute(1, 0, 2)  # (h, d, dh)
        a = (w_qu @ uk_heads).permute(1, 0, 2).reshape(d, h * m)  # (d, h M)
        c = (self.b_qu.view(h, 1, dh) @ uk_heads).view(h, m) + key_bias  # (h, M)
        b = (uv.view(m, h, dh).transpose(0, 1) @ self.wo_heads).reshape(h * m, d)  # (h M, d)
        return a, c.reshape(h * m), b

    def forward(
        self, x: Tensor, video_bias: Tensor, a: Tensor, c_bias: Tensor, b: Tensor
    ) -> Tensor:
        # x (C, T, d); video_bias (C, 1, 1, T) additive key mask; a, c_bias, b: `user_side`
        n_c, t, d = x.shape
        h = self.h
        m = b.shape[0] // h
        proj = x @ torch.cat([self.w_x, a], dim=1) + torch.cat([self.b_x, c_bias])
        qv, k, vw, att_u = proj.split([d, d, h * d, h * m], dim=-1)
        # (C, d, h T): head a's rows hold head a's keys, zeros elsewhere
        kbd = (k.transpose(1, 2)[:, :, None, :] * self.head_of_row).reshape(n_c, d, h * t)
        att_v = (qv @ kbd).view(n_c, t, h, t) + video_bias  # (C, T, h, T)
        p = torch.cat([att_v, att_u.view(n_c, t, h, m)], dim=-1).softmax(dim=-1)
        vw_heads = vw.view(n_c, t, h, d).transpose(1, 2).reshape(n_c, h * t, d)  # (C, h T, d)
        y = p[..., :t].reshape(n_c, t, h * t) @ vw_heads
        y = y + (p[..., t:].reshape(n_c, t, h * m) @ b) + self.bo  # (C, T, d)
        x = self.norm1(x + y)
        out: Tensor = self.norm2(x + self.ffn(x))
        return out


class TokenMajorVideoEncoder(nn.Module):
    """`ModalityEncoder.encode_video` (self stream, eval mode) over `TokenMajorVideoBlock`s."""

    def __init__(self, enc: ModalityEncoder):
        super().__init__()
        self.video = nn.ModuleList(
            TokenMajorVideoBlock(cast(CrossAttentionBlock, b)) for b in enc.video[: enc.n_run]
        )

    def encode_video(self, v: Tensor, v_mask: Tensor, states: Tensor, u_mask: Tensor) -> Tensor:
        # v (C, T, d), v_mask (C, T); states (1, L, M, d), u_mask (1, M): one broadcast user
        video_bias = torch.where(v_mask, 0.0, MASK_VALUE)[:, None, None, :]  # (C, 1, 1, T)
        key_bias = torch.where(u_mask[0], 0.0, MASK_VALUE)  # (M,)
        for i, block in enumerate(self.video):
            blk = cast(TokenMajorVideoBlock, block)
            v = blk(v, video_bias, *blk.user_side(states[:, i], key_bias))
        return v


class ElementwiseTiltDecoder(nn.Module):
    """`InterestDecoder` with its user tilt ``R * (slot_features @ w)`` written as four scaled
    terms: exported as is, the (C, T, 4) @ (4,) product is a MatMul that ONNX Runtime runs as
    slowly as the biggest projection of the scorer (a matrix-vector product per row block).

    ``tilt`` stays an attribute (``SegmentInterestModel.score`` reads it to take the residual's
    carrier token off the user states); the wrapped decoder runs without it and the tilt is
    added on the slots ``j <= N`` (an impossible slot keeps ``IMPOSSIBLE_LOGIT``).
    """

    def __init__(self, decoder: InterestDecoder):
        super().__init__()
        if decoder.tilt is None:
            raise ValueError("the decoder has no user tilt")
        self.tilt = decoder.tilt
        decoder.tilt = None
        self.inner = decoder
        self.s_max, self.mask_impossible = decoder.s_max, decoder.mask_impossible

    def forward(
        self,
        states: list[Tensor],
        video_ids: Tensor,
        n_segments: Tensor,
        slots: Tensor | None = None,
        user_residual: Tensor | None = None,
        prior: Tensor | None = None,
    ) -> Tensor:
        z: Tensor = self.inner(states, video_ids, n_segments, slots, None, prior)  # (C, T)
        if user_residual is None:
            raise ValueError("user_residual is required when user_tilt > 0")
        w = self.tilt
        n = n_segments.clamp(1, self.s_max).to(torch.float32)[:, None]  # (C, 1)
        j = torch.arange(self.s_max, device=z.device) if slots is None else slots
        jf = j.to(torch.float32)[None, :]  # (1, T)
        # the terms of slot_features (j/N, j == N, j < N, N/S) in its order
        shape = w[0] * (jf / n) + w[1] * (jf == n).float() + w[2] * (jf < n).float()
        shape = shape + w[3] * (n / self.s_max)
        t = user_residual[:, None] * shape  # (C, T)
        if self.mask_impossible:
            t = t.masked_fill(j[None, :] > n_segments[:, None], 0.0)
        return z + t
