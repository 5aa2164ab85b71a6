"""`segint export`: turn a training run (and optionally a SegRec CTR run) into a versioned ONNX
serving artifact."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained run to ONNX + manifest (artifacts/VERSION)",
        description="Write the ONNX graph(s), manifest.json and vocabularies of a training run.",
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="training run directory")
    p.add_argument(
        "--segrec",
        metavar="SEGREC_RUN",
        help="also export this `segint segrec train` run's CTR head (trained on --model)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="artifact folder, e.g. artifacts/v1")
    p.add_argument("--version", help="model version for cache keys (default: name of --out)")
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from export.onnx import export_run  # torch: imported only when the command runs

    manifest = export_run(
        args.model, args.out, version=args.version, force=args.force, segrec=args.segrec
    )
    graphs = ", ".join(spec.file for spec in manifest.graphs.values())
    for precision, by_graph in manifest.precisions.items():
        graphs += "".join(f", {v.file} ({precision})" for v in by_graph.values())
    if manifest.ctr is not None:
        graphs += f" (CTR head {manifest.ctr.backbone}/{manifest.ctr.mode})"
    sys.stdout.write(
        f"exported {manifest.model_version} ({manifest.user_stream} stream, opset "
        f"{manifest.opset}): {graphs} -> {args.out}\n"
    )
    return 0
