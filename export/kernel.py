"""The scorer with each video block as one ``segint.VideoBlock`` node (``scorer.kernel.onnx``).

ONNX Runtime runs the served scorer's video blocks (`export.fused.FusedVideoBlock`) as ~30
small operators each; on d = 32 rows their per-operator passes, not arithmetic, take the time.
The custom operator ``segint.VideoBlock`` (`service.kernels`, C++) runs a block as one pass per
candidate. This module writes the scorer that uses it: the same graph as ``scorer.onnx``
(same inputs, outputs and every other operator), each video block replaced by one node whose
inputs are the block's tokens, the candidates' valid-key counts, the user's keys and counted
values (computed in the graph, as in the exported form) and the block's weights as one flat
initializer (`KERNEL_LAYOUT`).

While the graph is exported, a torch custom operator (``segint::video_block``) stands in for
each block; its PyTorch implementation computes what the block computes from the flat weights
(so the packing is tested in PyTorch too), and the exporter writes it as the custom node.

Only models the kernel was written for get the file (`kernel_unfit` says why not): the self
stream, d = 32, 4 heads, FFN 64, the deferred softmax, at most 40 slots and 64 user tokens.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import onnx
import torch
from onnxscript import values
from torch import Tensor, nn

from export.contract import KERNEL_OP as OP_NAME
from export.contract import KERNEL_OP_DOMAIN as OP_DOMAIN
from export.fused import FusedVideoBlock, FusedVideoEncoder, fused_copy, scorer_softmax
from model.network import SegmentInterestModel

log = logging.getLogger(__name__)

D, HEADS, DH, FFN = 32, 4, 8, 64
MAX_SLOTS, MAX_USER_TOKENS = 40, 64  # the kernel's fixed buffers (video_block.cpp)
V1_PADDED = 48  # per head [v, 1] (4 x 9 = 36 columns), padded to three 16-float vectors
# The flat weights, in order: (name, shape). Maps are stored input-major (transposed).
KERNEL_LAYOUT = (
    ("qk", (D, 3 * D)),  # [q_video * scale, q_user * scale, k_video]
    ("qk_bias", (3 * D,)),
    ("v1", (D, V1_PADDED)),  # per head [v, 1], zero past 36
    ("v1_bias", (V1_PADDED,)),
    ("out", (D, D)),
    ("out_bias", (D,)),
    ("norm1", (D,)),
    ("norm1_bias", (D,)),
    ("ffn1", (D, FFN)),
    ("ffn1_bias", (FFN,)),
    ("ffn2", (FFN, D)),
    ("ffn2_bias", (D,)),
    ("norm2", (D,)),
    ("norm2_bias", (D,)),
)


def kernel_unfit(model: SegmentInterestModel) -> str | None:
    """Why ``model``'s scorer cannot use the kernel, or None when it can."""
    cfg = model.cfg
    if cfg.user_stream != "self":
        return "the cross stream has no separate video blocks"
    if (cfg.d_model, cfg.n_heads, cfg.ffn_dim) != (D, HEADS, FFN):
        return f"d {cfg.d_model}, {cfg.n_heads} heads, FFN {cfg.ffn_dim} (the kernel's: 32, 4, 64)"
    if cfg.attn_logit_dropout:
        return "the reference quirk's attention-logit dropout"
    if cfg.s_max > MAX_SLOTS or cfg.history_len + 2 > MAX_USER_TOKENS:
        return f"s_max {cfg.s_max} or history_len {cfg.history_len} beyond the kernel's buffers"
    if scorer_softmax(model)["softmax"] != "deferred":
        return "attention logits not bounded enough for the deferred softmax"
    return None


def block_weights(block: FusedVideoBlock) -> Tensor:
    """A deferred `FusedVideoBlock`'s weights, flat, in `KERNEL_LAYOUT`."""
    assert block.deferred
    ffn1, ffn2 = cast(nn.Linear, block.ffn[0]), cast(nn.Linear, block.ffn[3])
    v1 = torch.zeros(D, V1_PADDED)
    v1[:, : HEADS * (DH + 1)] = block.v1.weight.T
    v1_bias = torch.zeros(V1_PADDED)
    v1_bias[: HEADS * (DH + 1)] = block.v1.bias
    parts = [
        block.qkv.weight.T, block.qkv.bias, v1, v1_bias, block.out.weight.T, block.out.bias,
        block.norm1.weight, block.norm1.bias, ffn1.weight.T, ffn1.bias, ffn2.weight.T, ffn2.bias,
        block.norm2.weight, block.norm2.bias,
    ]  # fmt: skip
    for (name, shape), part in zip(KERNEL_LAYOUT, parts, strict=True):
        assert tuple(part.shape) == shape, (name, tuple(part.shape))
    return torch.cat([p.detach().reshape(-1) for p in parts]).float()


def _unpack(w: Tensor) -> dict[str, Tensor]:
    out, at = {}, 0
    for name, shape in KERNEL_LAYOUT:
        n = int(torch.Size(shape).numel())
        out[name] = w[at : at + n].view(shape)
        at += n
    return out


@torch.library.custom_op("segint::video_block", mutates_args=())
def video_block(x: Tensor, nkeys: Tensor, uk: Tensor, uv1t: Tensor, w: Tensor) -> Tensor:
    """One deferred video block from its flat weights (what ``segint.VideoBlock`` computes):
    x (C, T, d), nkeys (C,), user keys (h, dh, M), counted user values transposed
    (h, dh + 1, M). Rows past a candidate's ``nkeys + 1`` (neither its keys nor its outcomes:
    the decoder masks their logits) are zero, as the kernel leaves them uncomputed."""
    p = _unpack(w)
    c, t, d = x.shape
    rows = x.reshape(c * t, d)
    qv, qu, k = (rows @ p["qk"] + p["qk_bias"]).view(c, t, 3, HEADS, DH).permute(2, 3, 0, 1, 4)
    keep = (torch.arange(t, device=x.device)[None] < nkeys[:, None]).to(x.dtype)  # (C, T)
    v1 = (rows @ p["v1"] + p["v1_bias"])[:, : HEADS * (DH + 1)]
    v1 = v1.view(c, t, HEADS, DH + 1).permute(2, 0, 1, 3) * keep[None, :, :, None]
    e_v = torch.exp(qv @ k.transpose(-2, -1))  # (h, C, T, T)
    e_u = torch.exp(qu.reshape(HEADS, c * t, DH) @ uk)  # (h, C T, M)
    num = e_v @ v1 + (e_u @ uv1t.transpose(1, 2)).view(HEADS, c, t, DH + 1)
    y = (num[..., :DH] / num[..., DH:]).permute(1, 2, 0, 3).reshape(c * t, d)
    h1 = nn.functional.layer_norm(rows + y @ p["out"] + p["out_bias"], (d,), p["norm1"],
                                  p["norm1_bias"])  # fmt: skip
    f = nn.functional.gelu(h1 @ p["ffn1"] + p["ffn1_bias"]) @ p["ffn2"] + p["ffn2_bias"]
    out = nn.functional.layer_norm(h1 + f, (d,), p["norm2"], p["norm2_bias"]).view(c, t, d)
    computed = torch.arange(t, device=x.device)[None] <= nkeys[:, None]  # (C, T)
    return torch.where(computed[..., None], out, 0.0)


@video_block.register_fake
def _(x: Tensor, nkeys: Tensor, uk: Tensor, uv1t: Tensor, w: Tensor) -> Tensor:
    return torch.empty_like(x)


class KernelVideoEncoder(nn.Module):
    """A deferred `FusedVideoEncoder` whose blocks run as ``segint::video_block``."""

    def __init__(self, enc: FusedVideoEncoder):
        super().__init__()
        if not enc.deferred:
            raise ValueError("the kernel computes the deferred softmax only")
        self.video = enc.video  # the user-side maps of each block stay in the graph
        for i, block in enumerate(enc.video):
            self.register_buffer(f"kernel_weights_{i}", block_weights(cast(FusedVideoBlock, block)))

    def encode_video(self, v: Tensor, v_mask: Tensor, states: Tensor, u_mask: Tensor) -> Tensor:
        nkeys = v_mask.sum(1)  # valid keys: a prefix of every candidate's slots
        for i, block in enumerate(self.video):
            block = cast(FusedVideoBlock, block)
            uk, uv = block.user_keys(states[:, i])
            uv1t = block.counted_values(uv, u_mask[0]).transpose(1, 2).contiguous()
            w = cast(Tensor, getattr(self, f"kernel_weights_{i}"))
            v = torch.ops.segint.video_block(v, nkeys, uk, uv1t, w)
        return v


def _schema() -> Any:
    """The custom node's ONNX schema (the exporter builds nodes from schemas), registered once."""
    if not onnx.defs.has(OP_NAME, OP_DOMAIN):
        param = onnx.defs.OpSchema.FormalParameter
        onnx.defs.register_schema(
            onnx.defs.OpSchema(
                OP_NAME,
                OP_DOMAIN,
                1,
                inputs=[
                    param("x", "T"),
                    param("nkeys", "I"),
                    param("user_keys", "T"),
                    param("user_values", "T"),
                    param("weights", "T"),
                ],
                outputs=[param("y", "T")],
                type_constraints=[("T", ["tensor(float)"], ""), ("I", ["tensor(int64)"], "")],
            )  # fmt: skip
        )
    return onnx.defs.get_schema(OP_NAME, 1, OP_DOMAIN)


def translations() -> dict[Any, Any]:
    """The exporter's ``custom_translation_table``: ``segint::video_block`` as the node."""
    node = values.Op(values.Opset(OP_DOMAIN, 1), OP_NAME, _schema())

    def video_block_node(x: Any, nkeys: Any, uk: Any, uv1t: Any, w: Any) -> Any:
        return node(x, nkeys, uk, uv1t, w)

    return {torch.ops.segint.video_block.default: video_block_node}


def kernel_copy(model: SegmentInterestModel) -> SegmentInterestModel:
    """`export.fused.fused_copy` (the served form) with every video encoder a
    `KernelVideoEncoder`: the module `export.onnx.export_kernel_scorer` exports."""
    reason = kernel_unfit(model)
    if reason is not None:
        raise ValueError(f"the kernel does not fit this model: {reason}")
    fused = fused_copy(model)
    for name, enc in fused.encoders.items():
        fused.encoders[name] = KernelVideoEncoder(cast(FusedVideoEncoder, enc))
    return fused
