"""`segint features ...`: extract, import, generate and inspect segment feature stores."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from segint.commands import finite_float
from segint.errors import SegintError


def register(sub: Any) -> None:
    feats = sub.add_parser("features", help="segment content features (extract, import, synth)")
    fsub = feats.add_subparsers(dest="features_command", metavar="ACTION", parser_class=type(feats))

    p = fsub.add_parser("extract", help="video files -> per-segment CLIP vision features")
    p.add_argument("--videos", required=True, help="directory (recursive) or list file")
    p.add_argument("--out", required=True, help="feature store directory (appended to)")
    p.add_argument(
        "--encoder",
        default="hf:clip-vit-large-patch14-336",
        help="hf:NAME or open_clip:NAME (preset or local JSON config)",
    )
    p.add_argument("--weights", required=True, help="local weights file (never downloaded)")
    p.add_argument("--feature", choices=("patch_mean", "projected"), default="patch_mean")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--batch", type=int, default=32, help="images per encoder call")
    p.add_argument("--workers", type=int, default=1, help="decoding threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_extract)

    p = fsub.add_parser("import-segmm", help="SegMM memmap + JSON map -> our store")
    p.add_argument(
        "--memmap", action="append", required=True, help="memmap file (repeat for parts, in order)"
    )
    p.add_argument("--map", required=True, help='JSON map "<video_id>-<segment>" -> row')
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--out", required=True, help="feature store directory")
    p.add_argument(
        "--l1-normalize", action="store_true", help="store x / (|x|_1 + 1e-6) as the reference"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_import)

    p = fsub.add_parser("synth", help="synthetic log + feature store with content-driven exits")
    p.add_argument("--out", required=True, help="output directory (must not hold a store)")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--views", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--content-weight",
        type=finite_float,
        default=1.5,
        help="0 = exits ignore content (control)",
    )
    p.set_defaults(func=run_synth)

    p = fsub.add_parser("info", help="print a store's metadata and counts as JSON")
    p.add_argument("store")
    p.set_defaults(func=run_info)


def run_extract(args: argparse.Namespace) -> int:
    try:
        from segint.features.extract import extract
    except ModuleNotFoundError as e:
        raise SegintError(f"{e.name} is missing: pip install 'segint[features]'") from None
    report = extract(
        args.videos,
        args.out,
        encoder=args.encoder,
        weights=args.weights,
        feature=args.feature,
        device=args.device,
        batch=args.batch,
        workers=args.workers,
        progress=not args.no_progress,
    )
    out = sys.stdout
    out.write(
        f"extracted {report.extracted} videos ({report.frames} frames) in "
        f"{report.seconds:.1f} s: {report.frames_per_s:.2f} frames/s\n"
        f"skipped {report.skipped_existing} already in {args.out}, "
        f"failed {len(report.failed)}\n"
    )
    for path, reason in report.failed.items():
        out.write(f"  failed: {path}: {reason}\n")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from segint.features.segmm import import_segmm

    counts = import_segmm(
        args.memmap,
        args.map,
        args.out,
        dim=args.dim,
        dtype=args.dtype,
        l1=args.l1_normalize,
        progress=not args.no_progress,
    )
    sys.stdout.write(
        f"imported {counts['imported']:,} rows into {args.out} "
        f"({counts['skipped_existing']:,} already there)\n"
    )
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from segint.features.synthetic import LOG_FILE, generate

    try:
        log, store = generate(
            args.users,
            args.videos,
            args.views,
            args.dim,
            args.seed,
            args.out,
            content_weight=args.content_weight,
        )
    except (ValueError, FileExistsError) as e:
        raise SegintError(str(e)) from None
    sys.stdout.write(
        f"wrote {log.height:,} views of {args.users} users on {args.videos} videos to "
        f"{args.out}/{LOG_FILE} (canonical format) and the feature store {store}\n"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from segint.features.store import FeatureStore

    store = FeatureStore.open(args.store)
    info = {**store.meta, "videos": len(store), "rows": store.n_rows}
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0
