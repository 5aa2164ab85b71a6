"""Calibration report from predictions files (`segint plot calibration`).

Two views of the watch-time heads, per method, over the pooled rows of the files:

* **reliability of ``completion_probability``**: rows binned by the predicted probability of
  watching to the end (the strict distribution's mass on slot ``N``; 0 for ``N = S``, where
  no slot exists) into ``bins`` equal-width bins; per bin the mean prediction against the
  observed completion rate (``exit_slot == N``). ECE = the row-weighted mean absolute gap.
* **watch time by duration bucket**: MAE in slots of the median (the served estimate) and of
  the truncated mean, per bucket of ``N`` (5-second segments), with `segint.metrics`'s
  per-row values under the strict protocol.

Written to ``DIR``: ``reliability.png``, ``watch_time_by_duration.png`` and
``calibration.json`` / ``calibration.md`` with the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.heads import completion_probability
from segint.metrics import eligible_slots, per_row_metrics, renormalised
from segint.predictions import method_arrays

# Buckets of N (segments): 0-10 s, 10-20 s, 20-40 s, 40-80 s, 80-200 s.
N_BUCKETS = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 40))


def reliability(
    pred: npt.NDArray[np.float64], observed: npt.NDArray[np.bool_], bins: int = 10
) -> dict[str, Any]:
    """Per bin: rows, mean prediction, observed rate; and the ECE."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(pred, edges[1:-1]), 0, bins - 1)
    rows, mean_pred, rate = [], [], []
    for b in range(bins):
        sel = which == b
        rows.append(int(sel.sum()))
        mean_pred.append(float(pred[sel].mean()) if sel.any() else float("nan"))
        rate.append(float(observed[sel].mean()) if sel.any() else float("nan"))
    n = np.array(rows, dtype=np.float64)
    gap = np.abs(np.array(mean_pred) - np.array(rate))
    ece = float(np.nansum(n * gap) / max(n.sum(), 1.0))
    return {
        "edges": edges.tolist(),
        "rows": rows,
        "mean_pred": mean_pred,
        "observed": rate,
        "ECE": ece,
    }


def calibration_tables(frame: pl.DataFrame, methods: list[str], bins: int = 10) -> dict[str, Any]:
    """The report's numbers for ``methods`` on the rows of ``frame``."""
    target = frame["exit_slot"].to_numpy()
    n_seg = frame["n_segments"].to_numpy()
    seed = int(frame["tie_seed"][0])
    done = target == n_seg
    out: dict[str, Any] = {"rows": frame.height, "reliability": {}, "by_duration": {}}
    buckets = [(lo, hi) for lo, hi in N_BUCKETS if ((n_seg >= lo) & (n_seg <= hi)).any()]
    out["buckets"] = [
        {"N": f"{lo}-{hi}", "seconds": f"{(lo - 1) * 5}-{hi * 5}", "rows": int(((n_seg >= lo) & (n_seg <= hi)).sum())}
        for lo, hi in buckets
    ]  # fmt: skip
    for m in methods:
        scores, dist = method_arrays(frame, m)
        real = renormalised(dist, eligible_slots(n_seg, dist.shape[1], "strict"))
        out["reliability"][m] = reliability(completion_probability(real, n_seg), done, bins)
        per = per_row_metrics(scores, dist, target, n_seg, "strict", seed)
        out["by_duration"][m] = {
            "MAE": [float(per["MAE"][(n_seg >= lo) & (n_seg <= hi)].mean()) for lo, hi in buckets],
            "MAE_mean": [
                float(per["MAE_mean"][(n_seg >= lo) & (n_seg <= hi)].mean()) for lo, hi in buckets
            ],
            "MAE_all": float(per["MAE"].mean()),
            "MAE_mean_all": float(per["MAE_mean"].mean()),
        }
    return out


def markdown(tables: dict[str, Any]) -> str:
    """The numbers as two Markdown tables."""
    lines = [
        f"Rows: {tables['rows']:,}",
        "",
        "Completion probability: expected calibration error",
        "",
    ]
    lines += ["| method | ECE |", "|---|---|"]
    lines += [f"| {_md(m)} | {r['ECE']:.4f} |" for m, r in tables["reliability"].items()]
    heads = [f"N {b['N']} ({b['seconds']} s, {b['rows']:,} rows)" for b in tables["buckets"]]
    lines += ["", "Watch-time MAE (slots), median (served) / mean, by video length", ""]
    lines += ["| method | all | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    for m, d in tables["by_duration"].items():
        cells = [f"{a:.3f} / {b:.3f}" for a, b in zip(d["MAE"], d["MAE_mean"], strict=True)]
        lines.append(
            f"| {_md(m)} | {d['MAE_all']:.3f} / {d['MAE_mean_all']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _md(name: str) -> str:
    return name.replace("|", "\\|")  # "ItemPosition+prior|N" inside a Markdown table


def write_report(tables: dict[str, Any], out_dir: Path, title: str) -> list[Path]:
    """Both figures and the numbers into ``out_dir``; returns the files written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig = Figure(figsize=(6.4, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for m, r in tables["reliability"].items():
        ok = np.array(r["rows"]) > 0
        ax.plot(
            np.array(r["mean_pred"])[ok], np.array(r["observed"])[ok], marker="o",
            label=f"{m} (ECE {r['ECE']:.3f})",
        )  # fmt: skip
    ax.set_xlabel("predicted completion probability (bin mean)")
    ax.set_ylabel("observed completion rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability of completion_probability\n{title}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    path = out_dir / "reliability.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    written.append(path)

    fig = Figure(figsize=(8.0, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels = [f"N {b['N']}\n{b['seconds']} s\n{b['rows']:,} rows" for b in tables["buckets"]]
    methods = list(tables["by_duration"])
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(labels))
    for i, m in enumerate(methods):
        d = tables["by_duration"][m]
        ax.bar(x + i * width, d["MAE"], width, label=f"{m} median")
        ax.scatter(
            x + i * width, d["MAE_mean"], marker="_", s=120, color="black", zorder=3,
        )  # fmt: skip
    ax.set_xticks(x + width * (len(methods) - 1) / 2, labels, fontsize=8)
    ax.set_ylabel("watch-time MAE (slots); bar = median, tick = mean")
    ax.set_title(f"Watch-time error by video length\n{title}", fontsize=9)
    ax.legend(fontsize=7)
    path = out_dir / "watch_time_by_duration.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    written.append(path)

    path = out_dir / "calibration.json"
    path.write_text(json.dumps(tables, indent=2))
    written.append(path)
    path = out_dir / "calibration.md"
    path.write_text(markdown(tables))
    written.append(path)
    return written
