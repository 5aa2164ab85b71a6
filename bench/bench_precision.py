"""Reduced-precision scoring options next to fp32: speed and temporal-split quality.

For a trained run (``--model``) on the temporal split of ``--data``, every test row is scored
four ways (five with the kernel), all on the same rows:

- ``torch_fp32``: the PyTorch model (the training/evaluation path);
- ``torch_bf16``: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
- ``ort_fp32``: the exported graphs (user encoder + scorer, ragged: each row on its N + 1
  slots), as the service runs them;
- ``ort_int8``: the same with the artifact's ``scorer.int8.onnx``, the scorer quantised by
  ONNX Runtime's dynamic int8 quantisation at export (weights int8, activations quantised per
  run; VNNI kernels on this CPU), as ``SEGINT_SCORER_PRECISION=int8`` serves it;
- ``ort_kernel`` (where the kernel library is built): the artifact's ``scorer.kernel.onnx``,
  each video block one ``segint.VideoBlock`` node, the fp32 scorer the service runs by default
  (paired against ``ort_fp32``: the served path's quality against the exported graph's).

Quality: per-row NDCG@5 of the exit slot (strict protocol), paired differences against fp32
of the same path (bf16 - torch fp32, int8 - ORT fp32) with a bootstrap standard error (1,000
resamples of the rows). A reduced precision may become the serving default only if its
|delta NDCG@5| < 0.002 (the rule was fixed before looking at these rows; nothing is tuned on
them). Speed: median time of one user x 500 candidates is in ``bench/bench_service.py``
(``ort_stage``); this script reports the per-row scoring time of each path as a side note.

Run: ``.venv/bin/python bench/bench_precision.py --model runs/t0 --data
../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv --format kuairand`` (the run
trained with ``--split temporal --seed 0``). Writes ``reports/bench/precision.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "reports" / "bench" / ".cache"


def ndcg5(logits: np.ndarray, target: np.ndarray, n_segments: np.ndarray) -> np.ndarray:
    """Per-row NDCG@5 of the exit slot among the N + 1 real outcomes (strict protocol)."""
    from segint.metrics import eligible_slots, exit_ranks

    ranked = target < logits.shape[1]
    eligible = eligible_slots(n_segments, logits.shape[1], "strict")
    ranks = exit_ranks(logits[ranked], target[ranked], eligible[ranked], seed=0)
    return np.where(ranks <= 5, 1.0 / np.log2(ranks + 1.0), 0.0)


def paired(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Mean of b - a and its bootstrap standard error over rows."""
    d = b - a
    boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(1000)]
    return {"delta": float(d.mean()), "se": float(np.std(boot, ddof=1)), "rows": len(d)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="training run (temporal split)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--format", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "precision.json")
    args = p.parse_args()

    import onnxruntime as ort
    import torch
    from tqdm import tqdm

    from export.onnx import export_run
    from segint.data import load_table
    from segint.splits import TEST, assign_split, history_index
    from training.checkpoint import load_model, load_run_config
    from training.data import InteractionDataset
    from training.inference import predict_logits

    torch.set_num_threads(1)
    cfg = load_run_config(args.model)
    model, mcfg, users, videos = load_model(args.model)
    table = load_table(args.data, args.format)
    split = assign_split(table, "temporal", args.seed, 1)
    rows = np.flatnonzero(split == TEST)
    history = history_index(table, cfg.data.history_len)
    data = InteractionDataset(table, history, rows, users, videos, mcfg.s_max, None)
    target, nseg = data.targets()
    s = mcfg.s_max

    logits: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    logits["torch_fp32"] = predict_logits(model, data, 256, "cpu")
    seconds["torch_fp32"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits["torch_bf16"] = predict_logits(model, data, 256, "cpu")
    seconds["torch_bf16"] = time.perf_counter() - t0

    artifact = CACHE / f"precision-{args.model.resolve().name}"
    manifest = export_run(args.model, artifact, version="precision", force=True)
    variant = manifest.variant("scorer", "int8")
    if variant is None:
        raise SystemExit(f"{artifact}: the export wrote no int8 scorer")
    int8 = artifact / variant.file
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1

    def session(path: Path) -> Any:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    encoder = session(artifact / "user_encoder.onnx")
    scorers = {"ort_fp32": session(artifact / "scorer.onnx"), "ort_int8": session(int8)}
    # The fp32 scorer the service runs by default where the kernel library is built: each video
    # block one segint.VideoBlock node (service/kernels), opened as the ranker opens it.
    from service import kernels
    from service.ranker import _open_session

    kernel_spec, library = manifest.variant("scorer", "kernel"), kernels.library(None)
    if kernel_spec is not None and library is not None:
        path = artifact / kernel_spec.file
        scorers["ort_kernel"] = _open_session(path, False, 1, False, custom_ops=library)
    else:
        print("no kernel scorer here (not exported, or its library not built): not scored")
    for name in scorers:
        logits[name] = np.full((len(rows), s), 1e4, dtype=np.float32)
        seconds[name] = 0.0
    from torch.utils.data import DataLoader

    loader = DataLoader(data, batch_size=256, shuffle=False, collate_fn=data.collate)
    start = 0
    for batch in tqdm(loader, desc="ORT rows", unit="batch"):
        x = {k: v.numpy() for k, v in batch.inputs().items()}
        user = {k: x[k] for k in ("user_ids", "hist_video_ids", "hist_exit_slots")}
        user |= {k: x[k] for k in ("hist_n_segments", "hist_mask")}
        states, mask = encoder.run(None, user)
        for i in range(len(x["video_ids"])):
            width = min(int(x["n_segments"][i]) + 1, s)
            feeds = {
                "user_states": states[i : i + 1],
                "user_mask": mask[i : i + 1],
                "video_ids": x["video_ids"][i : i + 1],
                "n_segments": x["n_segments"][i : i + 1],
                "slot_index": np.arange(width),
            }
            for name, sess in scorers.items():
                t0 = time.perf_counter()
                (out,) = sess.run(None, feeds)
                seconds[name] += time.perf_counter() - t0
                logits[name][start + i, :width] = out[0]
        start += len(x["video_ids"])

    ndcg = {k: ndcg5(v.astype(np.float64), target, nseg) for k, v in logits.items()}
    rng = np.random.default_rng(0)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": len(rows),
        "ndcg5": {k: float(v.mean()) for k, v in ndcg.items()},
        "bf16_vs_fp32": paired(ndcg["torch_fp32"], ndcg["torch_bf16"], rng),
        "int8_vs_fp32": paired(ndcg["ort_fp32"], ndcg["ort_int8"], rng),
        "ort_fp32_vs_torch_fp32": paired(ndcg["torch_fp32"], ndcg["ort_fp32"], rng),
        "kernel_vs_fp32": paired(ndcg["ort_fp32"], ndcg["ort_kernel"], rng)
        if "ort_kernel" in ndcg
        else None,
        "max_abs_logit_diff": {
            "bf16": float(
                np.abs(logits["torch_bf16"] - logits["torch_fp32"])[
                    logits["torch_fp32"] < 1e3
                ].max()
            ),
            **{
                name[4:]: float(
                    np.abs(logits[name] - logits["ort_fp32"])[logits["ort_fp32"] < 1e3].max()
                )
                for name in ("ort_int8", "ort_kernel")
                if name in logits
            },
        },
        "seconds": seconds,
    }
    for name in ("bf16_vs_fp32", "int8_vs_fp32", "ort_fp32_vs_torch_fp32", "kernel_vs_fp32"):
        r = result[name]
        if r is None:
            continue
        verdict = "within 0.002" if abs(r["delta"]) < 0.002 else "moves >= 0.002"
        print(f"{name}: delta NDCG@5 {r['delta']:+.4f} +- {r['se']:.4f} (SE) -> {verdict}")
    print(json.dumps(result["ndcg5"]), json.dumps(result["seconds"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
