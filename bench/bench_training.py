"""Training and inference throughput of a training config on the shared KuaiRand-Pure log.

Measures, on the random_per_user split (seed 0) of
``../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv``:

1. training samples/s: the real step (collation, forward, loss, backward, clipping, AdamW)
   over ``--steps`` batches after a few warm-up steps;
2. inference rows/s: batched ``predict_logits`` over every row of the log (histories, no grad);
3. with ``--full``: the complete ``segint train`` run (early stopping included): wall time and
   best validation NDCG@5.

Run: ``.venv/bin/python bench/bench_training.py [--config configs/base.yaml] [--full]``.
Prints a summary and writes ``reports/bench/training.json``. Timings depend on what else the
machine is running; the JSON records the load average next to them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.loss import LOSSES  # noqa: E402
from model.network import SegmentInterestModel  # noqa: E402
from segint.data import Filters, load_table  # noqa: E402
from segint.splits import assign_split, history_index  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import InteractionDataset, collate  # noqa: E402
from training.inference import predict_logits  # noqa: E402
from training.train import make_optimizer, prepare, select_device, train, train_step  # noqa: E402

LOG = (
    Path(os.environ.get("SEGINT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "kuairand_pure"
    / "log_standard_4_25_to_4_30_pure.csv"
)


def bench_train_steps(
    cfg, prep, device: torch.device, steps: int, warmup: int = 5
) -> dict[str, float]:
    torch.manual_seed(cfg.optim.seed)
    model = SegmentInterestModel(prep.model_cfg).to(device).train()
    optimizer = make_optimizer(model, cfg)
    sampler = RandomSampler(prep.train, replacement=True, num_samples=10**9)
    loader = DataLoader(
        prep.train, batch_size=cfg.optim.batch_size, sampler=sampler, collate_fn=collate
    )
    batches = iter(loader)
    for batch in itertools.islice(batches, warmup):
        train_step(model, optimizer, LOSSES[cfg.loss], batch.to(device), cfg.optim.grad_clip)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, rows = time.perf_counter(), 0
    for batch in itertools.islice(batches, steps):
        train_step(model, optimizer, LOSSES[cfg.loss], batch.to(device), cfg.optim.grad_clip)
        rows += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "steps": steps,
        "rows": rows,
        "seconds": dt,
        "samples_per_s": rows / dt,
        "steps_per_s": steps / dt,
    }


def bench_inference(cfg, prep, table, device: torch.device) -> dict[str, float]:
    torch.manual_seed(cfg.optim.seed)
    model = SegmentInterestModel(prep.model_cfg).to(device).eval()
    every_row = InteractionDataset(
        table, history_index(table, cfg.data.history_len), np.arange(table.height),
        prep.users, prep.videos, cfg.data.s_max,
    )  # fmt: skip
    predict_logits(model, every_row, cfg.optim.eval_batch_size, device)  # warm-up
    t0 = time.perf_counter()
    logits = predict_logits(model, every_row, cfg.optim.eval_batch_size, device)
    dt = time.perf_counter() - t0
    return {
        "rows": len(logits),
        "seconds": dt,
        "rows_per_s": len(logits) / dt,
        "batch_size": cfg.optim.eval_batch_size,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "base.yaml")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--steps", type=int, default=60, help="timed training steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--full", action="store_true", help="also run the complete training")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "training.json")
    args = p.parse_args()
    if args.threads:  # the same default as `segint train --threads`
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    cfg = load_config(args.config, args.set)
    table = load_table(LOG, "kuairand", Filters(s_max=cfg.data.s_max))
    split = assign_split(table, cfg.data.split, cfg.data.seed, cfg.data.min_interactions)
    prep = prepare(cfg, table, split)
    result: dict = {
        "config": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
        "overrides": args.set,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "rows": {"table": table.height, "train": len(prep.train), "valid": len(prep.valid)},
        "parameters": sum(p.numel() for p in SegmentInterestModel(prep.model_cfg).parameters()),
    }
    result["train"] = bench_train_steps(cfg, prep, device, args.steps)
    print(
        f"training: {result['train']['samples_per_s']:,.0f} samples/s ({result['train']['steps_per_s']:.2f} steps/s, batch {cfg.optim.batch_size})"
    )
    result["inference"] = bench_inference(cfg, prep, table, device)
    print(
        f"inference: {result['inference']['rows_per_s']:,.0f} rows/s over {result['inference']['rows']:,} rows"
    )
    if args.full:
        out_dir = ROOT / "runs" / "bench_training"
        r = train(cfg, table, split, out_dir, device=str(device), progress=False)
        result["full_run"] = {
            "wall_s": r.elapsed_s, "steps": r.steps, "epochs": r.epochs, "stopped_early": r.stopped_early,
            "best_step": r.best_step, f"best_valid_NDCG@5_{cfg.optim.valid_protocol}": r.best_metric,
        }  # fmt: skip
        print(
            f"full run: {r.elapsed_s:.1f} s, {r.steps} steps, best valid NDCG@5 {r.best_metric:.4f} at step {r.best_step}"
        )
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
