"""Evaluation report: every method on the same test rows, both protocols, all and cold rows.

The JSON layout is shared by `segint baselines`, `segint evaluate` and later tasks::

    {"paper": {METHOD: {"HR@1": x, "HR@5": x, "HR@10": x, "NDCG@5": x, "NDCG@10": x,
                        "MAE": x, "MAE_mean": x, "XAUC": x}},
     "strict": {...}, "paper_cold": {...}, "strict_cold": {...},
     "rows": {"train": n, "test": n, "test_cold": n, "test_overlap_dropped": n},
     "settings": {METHOD: {...}},   # optional: chosen hyper-parameters and which rows chose them
     "provenance": {...},           # input files, filters, split (`segint.provenance`)
     "paired": {...}}               # optional (`paired_differences`): A - every other method

``test_overlap_dropped``, ``provenance`` and ``paired`` are added by the commands
(`segint.commands`); `segint evaluate` pairs ``SegInterest`` with every other method.

``paired``: ``{"A": name, "bootstrap": replicates, "z": 2.0, "all": BLOCK, "cold": BLOCK}``,
``BLOCK = {"rows": n, "vs": {B: {PROTOCOL: {METRIC: {"A", "B", "diff", "se", "verdict"}}}}}``
(``cold`` is null with fewer than 2 cold rows). The numbers are those of `segint compare` on
the predictions file: the same rows, tie-breaking and bootstrap (`segint.compare`); XAUC has
the strict protocol only.

A point-estimate-only method (NaN scores, `learned.base`) has no ``HR@K``/``NDCG@K`` keys.
``MAE`` is the served estimate's (median exit slot), ``MAE_mean`` the expected slot's
(`segint.metrics`). XAUC needs the test rows' ``duration_ms`` and ``play_time_ms``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from segint.baselines import MethodScores
from segint.compare import Z, compare_many
from segint.metrics import METRIC_NAMES, PROTOCOLS, RANK_METRICS, evaluate_scores
from segint.splits import cold_mask
from segint.watchtime import true_watch_ms


def evaluate_methods(
    fit: pl.DataFrame, test: pl.DataFrame, methods: MethodScores, seed: int = 0
) -> dict[str, Any]:
    """Evaluate each method's ``(scores, exit_dist)`` on ``test``; cold = video not in ``fit``."""
    target = test["exit_slot"].to_numpy()
    n_seg = test["n_segments"].to_numpy()
    cold = cold_mask(fit["video_id"].to_numpy(), test["video_id"].to_numpy())
    dur = watch = None
    if "duration_ms" in test.columns and "play_time_ms" in test.columns:
        dur = test["duration_ms"].to_numpy()
        watch = true_watch_ms(test["play_time_ms"].to_numpy(), dur)
    # A point estimate (every score NaN) has no ranking of slots: no HR/NDCG keys.
    point = {name: bool(np.isnan(s).all()) for name, (s, _) in methods.items()}
    result: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        for suffix, rows in (("", slice(None)), ("_cold", cold)):
            block = {}
            for name, (s, d) in methods.items():
                metrics = evaluate_scores(
                    s[rows],
                    d[rows],
                    target[rows],
                    n_seg[rows],
                    protocol,
                    seed,
                    duration_ms=None if dur is None else dur[rows],
                    watch_ms=None if watch is None else watch[rows],
                )
                if point[name]:
                    metrics = {k: v for k, v in metrics.items() if k not in RANK_METRICS}
                block[name] = metrics
            result[protocol + suffix] = block
    result["rows"] = {"train": fit.height, "test": test.height, "test_cold": int(cold.sum())}
    return result


def paired_differences(frame: pl.DataFrame, a: str, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """The report's ``paired`` entry: ``a`` minus every other method of a predictions table
    (`segint.predictions.predictions_frame`), on all rows and on cold rows."""
    from segint.predictions import method_names

    others = [m for m in method_names(frame) if m != a]

    def block(rows: pl.DataFrame) -> dict[str, Any] | None:
        if rows.height < 2:
            return None
        diffs = compare_many([("test rows", rows)], a, others, n_boot, seed, progress=False)
        vs: dict[str, Any] = {}
        for b, lines in diffs.items():
            entry: dict[str, Any] = vs.setdefault(b, {})
            for r in lines:
                entry.setdefault(r.protocol, {})[r.metric] = {
                    "A": r.a, "B": r.b, "diff": r.diff, "se": r.se, "verdict": r.verdict,
                }  # fmt: skip
        return {"rows": rows.height, "vs": vs}

    return {
        "A": a,
        "bootstrap": n_boot,
        "z": Z,
        "all": block(frame),
        "cold": block(frame.filter(pl.col("cold"))),
    }


def _format_paired(paired: dict[str, Any]) -> list[str]:
    lines = []
    for subset in ("all", "cold"):
        block = paired.get(subset)
        if not block:
            continue
        lines.append("")
        lines.append(
            f"[paired strict, {subset} rows ({block['rows']:,}): {paired['A']} - B, "
            f"± bootstrap SE ({paired['bootstrap']} replicates), W/L beyond {paired['z']:g} SE]"
        )
        lines.append(f"{'B':<22}" + "".join(f"{m:>18}" for m in METRIC_NAMES))
        mark = {"win": "W", "loss": "L", "tie": " ", "-": " "}
        for b, by_protocol in block["vs"].items():
            cells = []
            for m in METRIC_NAMES:
                d = by_protocol["strict"].get(m)
                if d is None or not np.isfinite(d["diff"]):
                    cells.append(f"{'-':>18}")
                else:
                    cells.append(f"{d['diff']:>+9.4f}±{d['se']:.4f}{mark[d['verdict']]}".rjust(18))
            lines.append(f"{b:<22}" + "".join(cells))
    return lines


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of a report, one block per protocol and row subset."""
    lines = []
    rows = result["rows"]
    lines.append(
        f"rows: train {rows['train']:,}  test {rows['test']:,}  test cold {rows['test_cold']:,}"
    )
    for key in ("paper", "strict", "paper_cold", "strict_cold"):
        if key not in result:
            continue
        lines.append("")
        lines.append(f"[{key}]")
        lines.append(f"{'method':<22}" + "".join(f"{m:>9}" for m in METRIC_NAMES))
        for name, metrics in result[key].items():
            cells = "".join(
                f"{metrics[m]:>9.4f}" if np.isfinite(metrics.get(m, np.nan)) else f"{'-':>9}"
                for m in METRIC_NAMES
            )
            lines.append(f"{name:<22}{cells}")
    if result.get("paired"):
        lines.extend(_format_paired(result["paired"]))
    for name, setting in result.get("settings", {}).items():
        lines.append("")
        lines.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in setting.items()))
    return "\n".join(lines)
