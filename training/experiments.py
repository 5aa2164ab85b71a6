"""Reproduce the closing-note tables: main results over seeds, and the ablation table.

    .venv/bin/python -m training.experiments main --data FILE --format kuairand --seeds 0 1 2
    .venv/bin/python -m training.experiments ablations --data FILE --format kuairand --seed 0

Each run is exactly the documented CLI (`segint train` then `segint evaluate --json`), so any
row can be reproduced alone; this script only loops, averages and formats. Results land in
``OUT/<split>/seed<k>/`` and the tables in ``OUT/main.md`` / ``OUT/ablations.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("segint.experiments")
METRICS = ["HR@1", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "MAE"]
# name -> --set overrides; the first row is the default config.
ABLATIONS: dict[str, list[str]] = {
    "default (exit_ce, L=2, self, exit prior|N)": [],
    "exit prior toward the global profile": ["model.exit_prior_base=global"],
    "user propensity tilt off": ["model.user_tilt=0"],
    "exit counts of training rows only (no refresh)": ["optim.refresh_counts=false"],
    "exit-count prior off": ["model.exit_prior=0", "model.user_tilt=0"],
    "history stats on the user token": ["model.history_stats=true"],
    "history stats + KuaiRand side tables": [
        "model.history_stats=true",
        "features.video_table=data/kuairand_pure/video_features_basic_pure.csv.gz",
        "features.user_table=data/kuairand_pure/user_features_pure.csv.gz",
    ],
    "loss bpr_max (reference; impossible slots unmasked)": [
        "loss=bpr_max",
        "model.mask_impossible=false",
    ],
    "loss pairwise (paper eq. 8)": ["loss=pairwise"],
    "loss bce": ["loss=bce"],
    "encoder layers 0": ["model.n_layers=0"],
    "position bias off": ["model.position_bias=false"],
    "history tokens off": ["model.history_tokens=false"],
    "reference last-layer off-by-one": ["model.reference_last_layer_bug=true"],
    "user stream cross (paper)": ["model.user_stream=cross"],
}


def segint(*args: str) -> None:
    cmd = [sys.executable, "-m", "segint.cli", *args]
    log.info("$ segint %s", " ".join(args))
    subprocess.run(cmd, check=True)


def run_one(
    out: Path,
    data: str,
    fmt: str | None,
    split: str,
    seed: int,
    config: str,
    sets: list[str],
    threads: int,
) -> dict[str, Any]:
    """Train + evaluate one configuration; returns the evaluate JSON (cached on disk)."""
    report = out / "eval.json"
    if report.exists():
        return dict(json.loads(report.read_text()))
    src = ["--data", data, "--split", split, "--seed", str(seed)] + (
        ["--format", fmt] if fmt else []
    )
    t0 = time.perf_counter()
    train = [
        "train",
        *src,
        "--config",
        config,
        "--out",
        str(out / "run"),
        "--threads",
        str(threads),
        "--no-progress",
    ]
    segint(*train, *(["--set", *sets] if sets else []))
    train_s = time.perf_counter() - t0
    segint(
        "evaluate",
        "--model",
        str(out / "run"),
        *src,
        "--json",
        str(report),
        "--threads",
        str(threads),
    )
    result = dict(json.loads(report.read_text()))
    result["train_seconds"] = round(train_s, 1)
    report.write_text(json.dumps(result, indent=2))
    return result


def mean_std(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{a.mean():.4f} ± {a.std(ddof=1):.4f}" if len(a) > 1 else f"{a.mean():.4f}"


def main_table(results: list[dict[str, Any]], title: str) -> str:
    """Markdown: every method, both protocols, all/cold rows, mean ± std over seeds."""
    lines = [f"### {title} ({len(results)} seeds)", ""]
    for key in ("paper", "strict", "paper_cold", "strict_cold"):
        lines += [
            f"**{key}**",
            "",
            "| method | " + " | ".join(METRICS) + " |",
            "|---" * (len(METRICS) + 1) + "|",
        ]
        for method in results[0][key]:
            cells = [mean_std([r[key][method][m] for r in results]) for m in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    rows = results[0]["rows"]
    lines.append(
        f"rows: fit {rows['train']:,}, test {rows['test']:,}, cold test {rows['test_cold']:,}; "
        f"train time {mean_std([r['train_seconds'] for r in results])} s"
    )
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["main", "ablations"])
    p.add_argument("--data", required=True)
    p.add_argument("--format")
    p.add_argument("--config", default="configs/base.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seed", type=int, default=0, help="ablations: the one seed")
    p.add_argument("--splits", nargs="+", default=["random_per_user", "temporal"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("reports/experiments"))
    p.add_argument("--shard", default="0/1", help="ablations: run every n-th variant from i (i/n)")
    args = p.parse_args()
    if args.what == "main":
        blocks = []
        for split in args.splits:
            results = [
                run_one(
                    args.out / split / f"seed{s}",
                    args.data,
                    args.format,
                    split,
                    s,
                    args.config,
                    [],
                    args.threads,
                )
                for s in args.seeds
            ]
            blocks.append(main_table(results, f"{split}, default config"))
        (args.out / "main.md").write_text("\n\n".join(blocks) + "\n")
        log.info("wrote %s", args.out / "main.md")
        return
    from model.flops import count_flops
    from training.checkpoint import load_run_config

    lines = [
        f"### Ablations (random_per_user, seed {args.seed}; SegInterest on the test rows)",
        "",
        "| variant | strict HR@1 | strict NDCG@5 | strict NDCG@10 | paper HR@5 | paper NDCG@5 | MAE | M multiply-adds/candidate | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    for k, (name, sets) in enumerate(ABLATIONS.items()):
        slug = "".join(c if c.isalnum() else "_" for c in name)[:40]
        out = args.out / "ablations" / slug
        if k % n_shards != shard and not (out / "eval.json").exists():
            continue  # another shard's variant, not finished yet
        r = run_one(
            out,
            args.data,
            args.format,
            "random_per_user",
            args.seed,
            args.config,
            sets,
            args.threads,
        )
        s, pa = r["strict"]["SegInterest"], r["paper"]["SegInterest"]
        mcfg = load_run_config(out / "run").model_config(1, 1)  # FLOPs do not depend on table sizes
        flops = count_flops(mcfg, 100).per_candidate / 1e6
        lines.append(
            f"| {name} | {s['HR@1']:.4f} | {s['NDCG@5']:.4f} | {s['NDCG@10']:.4f} | {pa['HR@5']:.4f} | {pa['NDCG@5']:.4f} | {s['MAE']:.3f} | {flops:.2f} | {r['train_seconds']:.0f} |"
        )
    (args.out / "ablations.md").write_text("\n".join(lines) + "\n")
    log.info("wrote %s", args.out / "ablations.md")


if __name__ == "__main__":
    main()
