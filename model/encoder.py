"""The user-video cross-attention encoder of one modality (paper eqs. 1-5).

Shape legend (as in model/network.py): B batch rows, C candidate videos, S slots, M user
tokens, d token width, h heads, dh = d / h, T query tokens, K key tokens, L layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import ModelConfig

# Masked attention logits: large but finite, so a fully masked row is a uniform (finite)
# softmax in PyTorch and ONNX Runtime alike; -inf would give NaN there.
MASK_VALUE = -1e4


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
