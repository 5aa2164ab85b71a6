"""Seeds -> table: mean ± std per (backbone, method) and Welch t-tests of SegRec vs the best baseline.

Input is a list of runs, each ``{"backbone", "mode", "method", "seed", "metrics": {"AUC",
"F1", "LogLoss"}, ...}`` (the ``runs`` of `segint segrec evaluate`'s JSON); runs are grouped
by method (the mode, or e.g. ``segrec+temp`` for a variant). The best baseline is picked per
backbone and per metric by its mean over seeds (highest AUC / F1, lowest LogLoss) among the
methods that are not SegRec or a SegRec variant; the p-value is Welch's two-sided t-test of SegRec's
per-seed values against that baseline's. `versus_video` tests every method that reads the
interest model (segrec, survival, features; cross-fitted or ``-insample``) against the
video-level CTR of the same backbone the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from segrec.config import BACKBONES, INTEREST_MODES, MODES
from segrec.metrics import HIGHER_IS_BETTER, METRICS, mean_std, welch_p

BACKBONE_NAMES = {"widedeep": "WideDeep", "din": "DIN"}
MODE_NAMES = {
    "video": "Video",
    "segsum": "SegSum",
    "segmean": "SegMean (1/N, ablation)",
    "segadjust": "SegAdjust",
    "itemposition": "ItemPosition wts",
    "segrec": "SegRec (ID)",
    "segrec+temp": "SegRec + learned temperature",
    "itemposition+temp": "ItemPosition wts + learned temperature",
    "survival": "Survival wts",
    "features": "Interest features",
    "segrec-insample": "SegRec (ID), in-sample interest",
    "survival-insample": "Survival wts, in-sample interest",
    "features-insample": "Interest features, in-sample interest",
}
Summary = dict[str, dict[str, dict[str, Any]]]  # backbone -> mode -> stats


def summarize(runs: Iterable[Mapping[str, Any]]) -> Summary:
    """backbone -> mode -> ``{"mean": {m: x}, "std": {m: x}, "values": {m: [...]}, "seeds": [...]}``."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["backbone"], _method(run)), []).append(run)
    out: Summary = {}
    for (backbone, mode), rs in sorted(groups.items(), key=lambda kv: _order(*kv[0])):
        values = {m: [float(r["metrics"][m]) for r in rs] for m in METRICS}
        stats = {m: mean_std(v) for m, v in values.items()}
        out.setdefault(backbone, {})[mode] = {
            "mean": {m: s[0] for m, s in stats.items()},
            "std": {m: s[1] for m, s in stats.items()},
            "values": values,
            "seeds": [r.get("seed") for r in rs],
        }
    return out


def _method(run: Mapping[str, Any]) -> str:
    return str(run.get("method", run["mode"]))


# Training options that change a run's method name (round 4): key -> (default, tag prefix).
TAGGED_OPTIONS = {
    "lr": (1e-3, "lr"),
    "ema": (0.0, "ema"),
    "emb_weight_decay": (0.0, "wd"),
    "eval_every": (0.0, "ev"),
    "zero_init_dense": (0.0, "z"),
}


def method_name(method: str, train: Mapping[str, Any]) -> str:
    """``method``, plus ``@`` and the training options that differ from the reference's
    (``features+lin@ema0.99,lr0.0003``): runs of one model but another optimiser are another
    method in tables, in `segint segrec select` and in the pairing with Video."""
    tags = [
        f"{prefix}{float(train[key]):g}"
        for key, (default, prefix) in TAGGED_OPTIONS.items()
        if key in train and float(train[key]) != default
    ]
    return f"{method}@{','.join(tags)}" if tags else method


def base_mode(method: str) -> str:
    """The mode of a method name: ``features+lin-insample@ema0.99`` -> ``features``."""
    return method.split("@")[0].split("+")[0].split("-")[0]


def video_method(method: str) -> str:
    """The Video method a method is compared with: the same training options."""
    _, at, tags = method.partition("@")
    return f"video{at}{tags}"


def _order(backbone: str, method: str) -> tuple[int, int, str, str]:
    b = BACKBONES.index(backbone) if backbone in BACKBONES else len(BACKBONES)
    mode = base_mode(method)
    m = MODES.index(mode) if mode in MODES else len(MODES)
    return b, m, backbone, method


def significance(summary: Summary, target: str = "segrec") -> dict[str, dict[str, Any]]:
    """backbone -> metric -> ``{"baseline": mode, "p": x, "delta": target - baseline}``."""
    out: dict[str, dict[str, Any]] = {}
    for backbone, modes in summary.items():
        if target not in modes:
            continue
        baselines = {m: s for m, s in modes.items() if not m.startswith(target)}
        if not baselines:
            continue
        out[backbone] = {}
        for metric in METRICS:
            sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
            best = max(baselines, key=lambda m: sign * _finite(baselines[m]["mean"][metric]))
            mine = modes[target]
            out[backbone][metric] = {
                "baseline": best,
                "p": welch_p(mine["values"][metric], baselines[best]["values"][metric]),
                "delta": mine["mean"][metric] - baselines[best]["mean"][metric],
            }
    return out


def versus_video(summary: Summary) -> dict[str, dict[str, dict[str, Any]]]:
    """backbone -> method -> metric -> ``{"p", "delta"}`` of each interest method vs the
    ``video`` method of the same training options (`video_method`)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for backbone, modes in summary.items():
        for method, s in modes.items():
            if base_mode(method) not in INTEREST_MODES or video_method(method) not in modes:
                continue
            base = modes[video_method(method)]
            out.setdefault(backbone, {})[method] = {
                m: {
                    "p": welch_p(s["values"][m], base["values"][m]),
                    "delta": s["mean"][m] - base["mean"][m],
                }
                for m in METRICS
            }
    return out


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -np.inf


def format_table(summary: Summary, tests: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: backbone x method rows, AUC / F1 / LogLoss as mean ± std, then p-values."""
    lines = [
        "| backbone | method | seeds | " + " | ".join(METRICS) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |",
    ]
    for backbone, modes in summary.items():
        bname = BACKBONE_NAMES.get(backbone, backbone)
        for mode, s in modes.items():
            cells = [f"{s['mean'][m]:.4f} ± {s['std'][m]:.4f}" for m in METRICS]
            lines.append(
                f"| {bname} | {MODE_NAMES.get(mode, mode)} | {len(s['seeds'])} | "
                + " | ".join(cells)
                + " |"
            )
        if backbone in tests:
            t = tests[backbone]
            cells = [
                f"p={t[m]['p']:.3g} (Δ {t[m]['delta']:+.4f} vs {MODE_NAMES.get(t[m]['baseline'], t[m]['baseline'])})"
                for m in METRICS
            ]
            lines.append(
                f"| {bname} | SegRec vs best baseline (Welch) | | " + " | ".join(cells) + " |"
            )
        for method, t in versus_video(summary).get(backbone, {}).items():
            cells = [f"p={t[m]['p']:.3g} (Δ {t[m]['delta']:+.4f})" for m in METRICS]
            name = MODE_NAMES.get(method, method)
            lines.append(f"| {bname} | {name} vs Video (Welch) | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bucket_table(runs: Iterable[Mapping[str, Any]]) -> str:
    """Markdown table of test AUC per duration bucket: mean over seeds per (backbone, method)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["backbone"], _method(run)), []).append(run)
    if not groups:
        return ""
    first = next(iter(groups.values()))[0]["by_bucket"]
    names = list(first)
    lines = [
        "| backbone | method | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in names) + " |",
        "| (test rows, positive rate) | | "
        + " | ".join(f"{first[b]['rows']}, {first[b]['positive_rate']:.2f}" for b in names)
        + " |",
    ]
    for (backbone, mode), rs in sorted(groups.items(), key=lambda kv: _order(*kv[0])):
        cells = []
        for b in names:
            vals = [r["by_bucket"][b]["AUC"] for r in rs if b in r["by_bucket"]]
            finite = [v for v in vals if v is not None and np.isfinite(v)]
            cells.append(f"{np.mean(finite):.4f}" if finite else "-")
        lines.append(
            f"| {BACKBONE_NAMES.get(backbone, backbone)} | {MODE_NAMES.get(mode, mode)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def paired_table(paired: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown table of the paired differences vs Video: delta ± bootstrap SE and delta / SE.

    A difference within two standard errors is a tie; AUC higher and LogLoss lower are better.
    """
    lines = [
        "| backbone | method vs Video (same rows) | pairs | ΔAUC ± SE | ΔLogLoss ± SE |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for backbone, methods in paired.items():
        for method, t in methods.items():
            cells = []
            for m in ("AUC", "LogLoss"):
                d, se = t[m]["delta"], t[m]["se"]
                z = d / se if se > 0 else float("nan")
                cells.append(f"{d:+.4f} ± {se:.4f} ({z:+.1f} SE)")
            lines.append(
                f"| {BACKBONE_NAMES.get(backbone, backbone)} | {MODE_NAMES.get(method, method)} | "
                f"{t['AUC']['pairs']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)
