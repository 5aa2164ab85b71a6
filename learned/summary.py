"""Mean ± std tables of `segint baselines --learned` reports over seeds (issue 13 results).

``python -m learned.summary RESULTS SPLIT [SPLIT ...]`` reads
``RESULTS/SPLIT-sSEED/learned-gbdt.json`` for every seed present and prints Markdown: per split
and row subset (``paper``, ``strict``, ``paper_cold``, ``strict_cold``) one table of every
method's metrics as mean ± std over seeds (population std, ``ddof = 0``), and the learned
methods' training seconds. Paired comparisons with standard errors come from `segint compare`
on the predictions files beside the reports.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

BLOCKS = ("strict", "paper", "strict_cold", "paper_cold")
METRICS = ("HR@1", "HR@5", "NDCG@5", "NDCG@10", "MAE", "MAE_mean", "XAUC")


def load_reports(
    results: Path, split: str, name: str = "learned-gbdt"
) -> dict[int, dict[str, Any]]:
    """Seed -> report of every ``RESULTS/SPLIT-sSEED/NAME.json``."""
    out = {}
    for path in sorted(results.glob(f"{split}-s*/{name}.json")):
        m = re.fullmatch(rf"{re.escape(split)}-s(\d+)", path.parent.name)
        if m:
            out[int(m.group(1))] = json.loads(path.read_text())
    return out


def _md(name: str) -> str:
    """A method name as a Markdown table cell (``|N`` would end the cell)."""
    return name.replace("|", "\\|")


def _cell(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0 or not np.isfinite(v).all():
        return "-"
    return f"{v.mean():.4f} ± {v.std():.4f}"


def split_tables(split: str, reports: dict[int, dict[str, Any]]) -> str:
    """Markdown tables of one split's reports."""
    seeds = sorted(reports)
    first = reports[seeds[0]]
    rows = first["rows"]
    lines = [
        f"### {split} (seeds {', '.join(map(str, seeds))})",
        "",
        f"rows: fit {rows['train']:,}, test {rows['test']:,}, cold test {rows['test_cold']:,}",
    ]
    for block in BLOCKS:
        lines += ["", f"**{block}**", "", "| method | " + " | ".join(METRICS) + " |"]
        lines.append("|---" * (len(METRICS) + 1) + "|")
        for method in first[block]:
            cells = [
                _cell([reports[s][block][method].get(m, np.nan) for s in seeds]) for m in METRICS
            ]
            lines.append(f"| {_md(method)} | " + " | ".join(cells) + " |")
    learned = [
        name for name, st in first.get("settings", {}).items() if "fit_and_predict_seconds" in st
    ]
    if learned:
        lines += [
            "",
            f"| learned method | fit + predict seconds (shared 2-core machine) "
            f"| ratio to {learned[0]} in the same run | encoding chosen (per seed) |",
            "|---|---|---|---|",
        ]
        for name in learned:
            secs = [reports[s]["settings"][name]["fit_and_predict_seconds"] for s in seeds]
            ref = [reports[s]["settings"][learned[0]]["fit_and_predict_seconds"] for s in seeds]
            ratio = [a / max(b, 1e-9) for a, b in zip(secs, ref, strict=True)]
            enc = [str(reports[s]["settings"][name].get("encoding", "-")) for s in seeds]
            lines.append(f"| {name} | {_cell(secs)} | {_cell(ratio)} | {', '.join(enc)} |")
    return "\n".join(lines)


def add_method(reports: dict[int, dict[str, Any]], results: Path, split: str, spec: str) -> None:
    """Add ``METHOD`` of ``RESULTS/SPLIT-sSEED/FILE.parquet`` (``spec`` = ``FILE:METHOD``, a
    predictions file of the same test rows, e.g. `segint evaluate`'s) to each seed's report,
    its metrics recomputed with `segint.predictions.metrics_from_frame`."""
    from segint.predictions import metrics_from_frame, read_predictions

    file, method = spec.split(":", 1)
    for seed, report in reports.items():
        frame = read_predictions(results / f"{split}-s{seed}" / f"{file}.parquet")
        if frame.height != report["rows"]["test"]:
            raise ValueError(f"{file}.parquet of {split} seed {seed} holds other test rows")
        cold = frame["cold"].to_numpy()
        for block in BLOCKS:
            protocol = block.removesuffix("_cold")
            rows = cold if block.endswith("_cold") else None
            if rows is not None and not rows.any():  # no cold rows: nothing to measure
                report[block][method] = dict.fromkeys(METRICS, float("nan"))
            else:
                report[block][method] = metrics_from_frame(frame, method, protocol, rows)


COMPARED = ("HR@1", "NDCG@5", "NDCG@10", "MAE", "MAE_mean", "XAUC")


def compare_table(paths: list[Path]) -> str:
    """Markdown of `segint compare --json` files: strict ``A - B ± SE (verdict)`` per metric."""
    lines = [
        "| A - B | rows | " + " | ".join(COMPARED) + " |",
        "|---" * (len(COMPARED) + 2) + "|",
    ]
    for path in paths:
        c = json.loads(path.read_text())
        strict = {r["metric"]: r for r in c["comparisons"] if r["protocol"] == "strict"}
        cells = []
        for m in COMPARED:
            r = strict.get(m)
            if r is None or r["diff"] != r["diff"]:  # NaN: a point estimate, no ranking
                cells.append("-")
            else:
                cells.append(f"{r['diff']:+.4f} ± {r['se']:.4f} ({r['verdict']})")
        cold = " (cold)" if c["cold_only"] else ""
        pair = f"{_md(c['A'])} - {_md(c['B'])}{cold}"
        lines.append(f"| {pair} | {c['rows']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m learned.summary", description=__doc__)
    p.add_argument(
        "results", type=Path, nargs="?", help="folder holding SPLIT-sSEED/learned-gbdt.json"
    )
    p.add_argument("splits", nargs="*")
    p.add_argument(
        "--compare", type=Path, nargs="+", help="only print these `segint compare --json` files"
    )
    p.add_argument("--report", default="learned-gbdt", help="report file name, without .json")
    p.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="FILE:METHOD",
        help="add METHOD from RESULTS/SPLIT-sSEED/FILE.parquet (e.g. segint:SegInterest)",
    )
    p.add_argument("--png", type=Path, help="also draw strict NDCG@5 and MAE bars here")
    args = p.parse_args(argv)
    if args.compare:
        sys.stdout.write(compare_table(args.compare) + "\n")
        return 0
    if args.results is None or not args.splits:
        p.error("give RESULTS and at least one SPLIT (or --compare FILE ...)")
    parts = []
    by_split = {}
    for split in args.splits:
        reports = load_reports(args.results, split, args.report)
        if not reports:
            sys.stderr.write(f"no reports for {split} under {args.results}\n")
            return 2
        for spec in args.add:
            add_method(reports, args.results, split, spec)
        by_split[split] = reports
        parts.append(split_tables(split, reports))
    sys.stdout.write("\n\n".join(parts) + "\n")
    if args.png is not None:
        plot_bars(by_split, args.png)
    return 0


def plot_bars(by_split: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    """Strict NDCG@5 (top) and MAE (bottom) per method, mean with ± std bars, per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(by_split), figsize=(6 * len(by_split), 7), squeeze=False)
    for col, (split, reports) in enumerate(by_split.items()):
        seeds = sorted(reports)
        methods = [m for m in reports[seeds[0]]["strict"] if m != "Random"]
        for row, metric in enumerate(("NDCG@5", "MAE")):
            v = np.array(
                [[reports[s]["strict"][m].get(metric, np.nan) for s in seeds] for m in methods]
            )
            ax = axes[row][col]
            ax.barh(methods, v.mean(axis=1), xerr=v.std(axis=1), color="tab:blue")
            finite = v[np.isfinite(v)]
            if len(finite):
                ax.set_xlim(finite.min() * 0.97, finite.max() * 1.02)
            ax.invert_yaxis()
            ax.set_title(f"{split}: strict {metric} ({len(seeds)} seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
