"""Markdown tables of `segint segrec evaluate --json` files: per backbone and method, the test
AUC / LogLoss mean ± std over seeds, Welch's p vs Video (per-seed values) and the paired
difference vs Video (same rows, same seed; bootstrap SE from `paired_vs_video`). Video means
the video-level run of the same training options (round 4: `segrec.report.video_method`).

usage: python docs/results/segrec/summarize3.py EVAL.json [EVAL.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from segrec.metrics import mean_std, welch_p
from segrec.report import base_mode, video_method


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(paths: list[str]) -> None:
    for path in paths:
        d = json.loads(Path(path).read_text())
        emit(f"\n{path}\n")
        emit(
            "| backbone | method | seeds | AUC | LogLoss | Welch p vs Video (ΔAUC / ΔLogLoss) "
            "| paired ΔAUC ± SE | paired ΔLogLoss ± SE |"
        )
        emit("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in d["runs"]:
            groups.setdefault((r["backbone"], r["method"]), []).append(r)
        for (b, m), runs in sorted(
            groups.items(), key=lambda kv: (kv[0][0], base_mode(kv[0][1]) != "video", kv[0][1])
        ):
            vals = {k: [r["metrics"][k] for r in runs] for k in ("AUC", "LogLoss")}
            video = groups.get((b, video_method(m)), [])  # Video of the same training options
            base = {k: [r["metrics"][k] for r in video] for k in vals}
            cells = []
            for k in ("AUC", "LogLoss"):
                mu, sd = mean_std(vals[k])
                cells.append(f"{mu:.4f} ± {sd:.4f}")
            if base_mode(m) == "video":
                vs, pa = "", ["", ""]
            else:
                parts = []
                for k in ("AUC", "LogLoss"):
                    delta = mean_std(vals[k])[0] - mean_std(base[k])[0]
                    parts.append(f"{welch_p(vals[k], base[k]):.3g} ({delta:+.4f})")
                vs = " / ".join(parts)
                paired = d.get("paired_vs_video", {}).get(b, {}).get(m, {})
                pa = []
                for k in ("AUC", "LogLoss"):
                    e = paired.get(k)
                    pa.append(
                        f"{e['delta']:+.4f} ± {e['se']:.4f} ({e['delta'] / e['se']:+.1f} SE)"
                        if e
                        else ""
                    )
            emit(
                f"| {b} | {m} | {len(runs)} | {cells[0]} | {cells[1]} | {vs} | {pa[0]} | {pa[1]} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
