"""Issue 12, round 11 (docs/serving.md): the video-block kernel alone against ONNX Runtime.

Measurement only (the served path is `service.kernels` + `export.kernel`). On the `make serve`
run (runs/default, its artifact in artifacts/default), 500 real KuaiRand candidates for one
user in round 11's 12-run bucket plan (64 slots of run overhead):

1. loads the kernel from the kernels' library (`make kernels`; the build this CPU runs, AVX-512F
   or AVX2, `service.kernels.isa`);
2. captures every run's input to the two video blocks from the exported form's torch model
   (`export.fused.fused_copy`) and checks the kernel against its blocks on every valid slot;
3. times, interleaved round by round: the kernel's two blocks over the 12 runs (ctypes, in
   process), the exported scorer (scorer.onnx) in ONNX Runtime (the whole ORT stage), and the
   same scorer exported without its two blocks (embeddings, the user-side key and value maps, decoder,
   shape arithmetic: what a scorer with the blocks as one custom operator each would still
   run operator by operator).

    .venv/bin/python docs/results/issue12_kernel/measure.py [ROUNDS]
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from bench_service import gemm_peak, kuairand_videos  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from export.fused import FusedVideoEncoder, fused_copy  # noqa: E402
from export.onnx import export_model  # noqa: E402
from segint.segments import n_segments as count_segments  # noqa: E402
from service import kernels  # noqa: E402
from service.history import History  # noqa: E402
from service.ranker import DISABLED_OPTIMIZERS, Ranker, Timings, bucket_plan, buckets  # noqa: E402
from training.checkpoint import load_model  # noqa: E402


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
torch.set_num_threads(1)
work = Path(tempfile.mkdtemp())
lib_path = kernels.library()
assert lib_path is not None, f"{kernels.LIBRARY} is not built for this CPU: make kernels"
video_block = getattr(ctypes.CDLL(str(lib_path)), f"video_block_{kernels.isa()}")
video_block.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p] * 6

model, cfg, _, _ = load_model(ROOT / "runs" / "default")
fused = fused_copy(model)
encoder = fused.encoders["id"]
assert isinstance(encoder, FusedVideoEncoder) and encoder.deferred
blocks = list(encoder.video)


def kernel_weights(b):
    """The block's 14 weight arrays in the kernel's layout (maps transposed, [v, 1] padded)."""

    def f(t):
        return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)

    wv1, bv1 = np.zeros((48, 32), np.float32), np.zeros(48, np.float32)
    wv1[:36], bv1[:36] = f(b.v1.weight), f(b.v1.bias)
    arrays = [
        f(b.qkv.weight.T), f(b.qkv.bias), np.ascontiguousarray(wv1.T), bv1,
        f(b.out.weight.T), f(b.out.bias), f(b.norm1.weight), f(b.norm1.bias),
        f(b.ffn[0].weight.T), f(b.ffn[0].bias), f(b.ffn[3].weight.T), f(b.ffn[3].bias),
        f(b.norm2.weight), f(b.norm2.bias),
    ]  # fmt: skip
    return arrays, (ctypes.c_void_p * 14)(*[a.ctypes.data for a in arrays])


weights = [kernel_weights(b) for b in blocks]

# One user (20 real views) and 500 distinct KuaiRand videos, as the bench draws them.
ranker = Ranker.load(ROOT / "artifacts" / "default", provider="cpu", kernel="off")
ids, dur = kuairand_videos(ranker.manifest.s_max)
pick = np.random.default_rng(0).choice(len(ids), 500, replace=False)
vids, durs = ids[pick], dur[pick]
h = History.from_views(
    ids[:20].tolist(), dur[:20].tolist(), (dur[:20] // 2).tolist(), list(range(20)),
    cap=ranker.history_cap,
)  # fmt: skip
state = ranker.encode_user(1, h)
nseg = np.clip(count_segments(durs), 1, ranker.manifest.s_max)
vidx = ranker.videos.lookup(vids)
feeds = {"video_ids": vidx, "n_segments": nseg, "user_states": state.states[None],
         "user_mask": state.mask[None]}  # fmt: skip

captured = []
encode_video = FusedVideoEncoder.encode_video


def capture(self, v, v_mask, states, u_mask):
    captured.append((v.clone(), v_mask.clone(), states.clone(), u_mask.clone()))
    return encode_video(self, v, v_mask, states, u_mask)


FusedVideoEncoder.encode_video = capture
order, runs = bucket_plan(nseg, ranker.manifest.s_max)
with torch.no_grad():
    for start, stop, width in runs:
        rows = order[start:stop]
        fused.score(torch.from_numpy(state.states[None]), torch.from_numpy(state.mask[None]),
                    torch.from_numpy(vidx[rows]), torch.from_numpy(nseg[rows]), None,
                    torch.arange(width))  # fmt: skip
FusedVideoEncoder.encode_video = encode_video

prepared, worst = [], 0.0
with torch.no_grad():
    for v, v_mask, states, u_mask in captured:
        c, t, _ = v.shape
        nk = v_mask.sum(1).numpy().astype(np.int64)
        assert (v_mask.numpy() == (np.arange(t)[None] < nk[:, None])).all(), "not a prefix"
        user, x, keep = [], v, v_mask.to(v.dtype)[None, :, :, None]
        for i, b in enumerate(blocks):
            uk, uv = b.user_keys(states[:, i])  # (h, dh, M), (h, M, dh)
            uv1 = b.counted_values(uv, u_mask[0])  # (h, M, dh + 1)
            user.append((np.ascontiguousarray(uk.numpy()),
                         np.ascontiguousarray(uv1.permute(0, 2, 1).numpy())))  # fmt: skip
            x = b(x, keep, uk, uv1)
        prepared.append((c, t, user[0][0].shape[-1], np.ascontiguousarray(v.numpy()), nk, user,
                         x.numpy(), np.arange(t)[None] < nk[:, None]))  # fmt: skip


def kernel_blocks(c, t, m, x0, nk, user):
    x = x0
    for i in range(len(blocks)):
        out = np.empty_like(x)
        uk, uv1t = user[i]
        video_block(c, t, m, x.ctypes.data, nk.ctypes.data, uk.ctypes.data,
                        uv1t.ctypes.data, weights[i][1], out.ctypes.data)  # fmt: skip
        x = out
    return x


for c, t, m, x0, nk, user, ref, valid in prepared:
    got = kernel_blocks(c, t, m, x0, nk, user)
    worst = max(worst, float(np.abs(got - ref)[valid].max()))
say(f"kernel vs the exported form's torch blocks: max abs difference {worst:.2e} (valid slots)")


def without_blocks(self, v, v_mask, states, u_mask):
    """The scorer with each block's user-side maps kept and the blocks themselves left out."""
    extra = 0.0
    for i, block in enumerate(self.video):
        uk, uv = block.user_keys(states[:, i])
        extra = extra + block.counted_values(uv, u_mask[0]).sum() + uk.sum()
    return v + 0.0 * extra


FusedVideoEncoder.encode_video = without_blocks
(work / "rest").mkdir()
export_model(model, work / "rest")
FusedVideoEncoder.encode_video = encode_video
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
rest = ort.InferenceSession(str(work / "rest" / "scorer.onnx"), sess_options=opts,
                            providers=["CPUExecutionProvider"],
                            disabled_optimizers=list(DISABLED_OPTIMIZERS))  # fmt: skip
exported = ranker.sessions["scorer"]


def ort_stage(session):
    ranker.sessions["scorer"] = session
    t = Timings()
    ranker._score_ragged(dict(feeds), nseg, t)
    return t.ort_s


def kernel_stage():
    t0 = time.perf_counter()
    for c, t, m, x0, nk, user, _, _ in prepared:
        kernel_blocks(c, t, m, x0, nk, user)
    return time.perf_counter() - t0


timed = {"ORT, exported scorer": lambda: ort_stage(exported),
         "ORT, scorer without its two blocks": lambda: ort_stage(rest),
         "kernel, two blocks": kernel_stage}  # fmt: skip
times = {k: [] for k in timed}
for r in range(ROUNDS + 5):
    for k in list(timed) if r % 2 else list(timed)[::-1]:
        times[k].append(timed[k]())
med = {k: float(np.median(v[5:])) * 1e3 for k, v in times.items()}
for k, v in med.items():
    say(f"{k:36s} {v:7.2f} ms (median of {ROUNDS} interleaved rounds)")
# Useful work as the bench counts it: the model on every candidate's exact slots.
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    for rows, width in buckets(nseg, ranker.manifest.s_max, run_overhead=0):
        model.score(torch.from_numpy(state.states[None]), torch.from_numpy(state.mask[None]),
                    torch.from_numpy(vidx[rows]), torch.from_numpy(nseg[rows]),
                    slot_index=torch.arange(width))  # fmt: skip
useful = counter.get_total_flops()
peak = gemm_peak(1)
say(f"useful work {useful / 1e9:.3f} GFLOP; 1-thread fp32 GEMM peak P = {peak:.1f} GFLOP/s")
projected = med["ORT, scorer without its two blocks"] + med["kernel, two blocks"]
say(f"{'projected: the rest in ORT + kernel':36s} {projected:7.2f} ms "
      f"({med['ORT, exported scorer'] / projected:.2f}x less than the exported scorer's stage)")  # fmt: skip
for name, ms in (("exported", med["ORT, exported scorer"]), ("projected", projected)):
    say(f"share of P on useful work, {name}: {useful / (ms * 1e-3) / (peak * 1e9):.1%}")
