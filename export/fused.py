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

Weights are copied from a trained module; nothing is learned here. Parity with the padded
PyTorch model is the scorer's parity test (tests/export/test_onnx.py, 1e-5).

Shapes: ``B`` query rows, ``T`` query tokens, ``K_i`` keys of source i, ``h`` heads, ``dh``
head width, ``n`` sources, ``d = h * dh``.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from model.network import MASK_VALUE, CrossAttention, SegmentInterestModel


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


def fused_copy(model: SegmentInterestModel) -> SegmentInterestModel:
    """A copy of ``model`` (eval mode) whose video blocks use `FusedCrossAttention`; the user
    blocks (the cached user encoder) are left as they are."""
    cfg = model.cfg
    if cfg.attn_logit_dropout:
        return model  # the reference quirk's dropout sits between logits and softmax: keep it
    fused = copy.deepcopy(model).eval()
    for enc in fused.encoders.values():
        for block in cast(nn.ModuleList, cast(nn.Module, enc).video):
            block.attn = FusedCrossAttention(cast(CrossAttention, block.attn))
    return fused
