"""Issue 12, round 11 (docs/serving.md): can the served scorer be exported with each video block
as one `segint.VideoBlock` node (custom_op.cpp), and does ONNX Runtime then score what the
served scorer scores, faster? Measurement only; nothing here is served.

A torch custom operator (`segint::video_block`, its reference implementation the exported
form's own block) stands in for each block while the scorer is exported; the exporter's
``custom_translation_table`` writes it as the custom node, the block's weights as one flat
initializer in the kernel's layout. The script then builds custom_op.cpp against ONNX Runtime's
API headers (Debian's libonnxruntime-dev, extracted into HEADERS), opens the file with the
library registered, checks its logits against the served scorer's on 500 real candidates
(every real slot) and times both, interleaved.

    HEADERS=/path/to/usr/include/onnxruntime .venv/bin/python docs/results/issue12_kernel/export_check.py
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.argv = [sys.argv[0], "1"]  # measure.py: one timing round (its set-up is what is used here)
g = runpy.run_path(str(HERE / "measure.py"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnxscript import values  # noqa: E402

import export.graph as graph  # noqa: E402
from export.fused import FusedVideoEncoder  # noqa: E402
from export.onnx import export_model  # noqa: E402
from service.ranker import DISABLED_OPTIMIZERS, Timings  # noqa: E402

say = g["say"]
blocks, weights, model, work = g["blocks"], g["weights"], g["model"], g["work"]
ranker, feeds, nseg = g["ranker"], g["feeds"], g["nseg"]
flat = [torch.from_numpy(np.concatenate([a.ravel() for a in w[0]])) for w in weights]
by_id = {float(f[:8].sum()): b for f, b in zip(flat, blocks, strict=True)}


@torch.library.custom_op("segint::video_block", mutates_args=())
def video_block(x: torch.Tensor, nkeys: torch.Tensor, uk: torch.Tensor, uv1t: torch.Tensor,
                w: torch.Tensor) -> torch.Tensor:  # fmt: skip
    block = by_id[float(w[:8].sum())]  # the block whose weights these are
    keep = (torch.arange(x.shape[1])[None] < nkeys[:, None]).to(x.dtype)[None, :, :, None]
    return block(x, keep, uk, uv1t.permute(0, 2, 1))


@video_block.register_fake
def _(x, nkeys, uk, uv1t, w):
    return torch.empty_like(x)


segint = values.Opset(domain="segint", version=1)


# The exporter builds nodes from ONNX schemas: one for the custom domain's op.
F = onnx.defs.OpSchema.FormalParameter
onnx.defs.register_schema(
    onnx.defs.OpSchema(
        "VideoBlock",
        "segint",
        1,
        inputs=[F("x", "T"), F("nkeys", "I"), F("uk", "T"), F("uv1t", "T"), F("w", "T")],
        outputs=[F("y", "T")],
        type_constraints=[("T", ["tensor(float)"], ""), ("I", ["tensor(int64)"], "")],
    )  # fmt: skip
)
VIDEO_BLOCK = values.Op(segint, "VideoBlock", onnx.defs.get_schema("VideoBlock", 1, "segint"))


def video_block_onnx(x, nkeys, uk, uv1t, w):
    return VIDEO_BLOCK(x, nkeys, uk, uv1t, w)


def encode_with_custom_op(self, v, v_mask, states, u_mask):
    nkeys = v_mask.sum(1)
    for i, block in enumerate(self.video):
        uk, uv = block.user_keys(states[:, i])
        uv1t = block.counted_values(uv, u_mask[0]).permute(0, 2, 1).contiguous()
        v = torch.ops.segint.video_block(v, nkeys, uk, uv1t, flat[i])
    return v


onnx_export = torch.onnx.export


def export_with_table(*args, **kwargs):
    table = {torch.ops.segint.video_block.default: video_block_onnx}
    return onnx_export(*args, custom_translation_table=table, **kwargs)


FusedVideoEncoder.encode_video = encode_with_custom_op
graph.torch.onnx.export = export_with_table
out = work / "custom"
out.mkdir()
export_model(model, out, rewrite=False)
graph.torch.onnx.export = onnx_export

headers = os.environ["HEADERS"]
lib = work / "segint_ops.so"
subprocess.run(["g++", "-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c++17",
                f"-I{headers}", str(HERE / "custom_op.cpp"), "-o", str(lib), "-lmvec", "-lm"],
               check=True)  # fmt: skip
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
opts.register_custom_ops_library(str(lib))
custom = ort.InferenceSession(str(out / "scorer.onnx"), sess_options=opts,
                              providers=["CPUExecutionProvider"],
                              disabled_optimizers=list(DISABLED_OPTIMIZERS))  # fmt: skip
nodes = onnx.load(str(out / "scorer.onnx")).graph.node
say(f"exported scorer: {len(nodes)} nodes, "
      f"{sum(n.op_type == 'VideoBlock' for n in nodes)} segint.VideoBlock")  # fmt: skip
served = g["served"]


def stage(session):
    ranker.sessions["scorer"] = session
    t = Timings()
    logits = ranker._score_ragged(dict(feeds), nseg, t)
    return t.ort_s, logits


_, want = stage(served)
_, got = stage(custom)
real = np.arange(want.shape[1])[None] <= nseg[:, None]
say(f"logits, custom-op scorer vs served, every real slot: max abs difference "
      f"{np.abs(got - want)[real].max():.2e}")  # fmt: skip
times = {"served": [], "custom op": []}
for r in range(45):
    for name, s in (("served", served), ("custom op", custom))[:: 1 if r % 2 else -1]:
        times[name].append(stage(s)[0])
ms = {k: float(np.median(v[5:])) * 1e3 for k, v in times.items()}
useful, peak = g["useful"], g["peak"]
for k, v in ms.items():
    say(f"ORT stage, {k:10s} {v:6.2f} ms, {useful / (v * 1e-3) / (peak * 1e9):.1%} of P")
say(f"time ratio custom op / served {ms['custom op'] / ms['served']:.3f}")
