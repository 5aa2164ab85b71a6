"""`segint train`: train the segment interest model on a split log or on a training file.

Two sources:

* ``--data FILE --split random_per_user --seed 0``: train on the split's training rows,
  validate (early stopping) on its validation rows; test rows are left for `segint evaluate`.
* ``--train FILE``: train on the file; its last 10% of rows by time validate.

Configuration: ``--config configs/NAME.yaml`` (default ``configs/base.yaml``), then
``--set SECTION.KEY=VALUE ...`` overrides; ``--split``, ``--seed`` (split *and* training
seed), ``--min-interactions`` and ``--s-max`` are shorthands for the matching ``data.*`` keys.
Also runs under ``torchrun --nproc_per_node K -m segint.cli train ARGS``.

A model with the content modality (``--set model.modalities=[id,content]
model.content_dim=DC``) reads segment features from ``--features STORE`` (a
`segint.features.FeatureStore` of width DC); its absolute path is recorded in the run's
``config.yaml`` (``features.store``) so that `segint evaluate` finds it by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from segint import provenance
from segint.commands.data import add_filter_options, filters_from_args
from segint.data import FORMATS, log_format
from segint.errors import SegintError
from segint.source import DataSource
from segint.splits import SPLIT_METHODS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "base.yaml"


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train the segment interest model")
    src = p.add_argument_group("data (give --data or --train)")
    src.add_argument("--data", help="one log to split into train/valid/test")
    src.add_argument("--train", help="training log; its last 10%% by time validates")
    src.add_argument("--format", choices=FORMATS, help="raw log format; omit for prepared data")
    src.add_argument("--split", choices=SPLIT_METHODS, help="with --data (data.split)")
    src.add_argument("--seed", type=int, help="split and training seed (data.seed, optim.seed)")
    src.add_argument("--min-interactions", type=int, help="drop users with fewer rows")
    p.add_argument(
        "--features",
        type=Path,
        help="segment feature store of a content model (features.store)",
    )
    p.add_argument("--config", type=Path, help=f"YAML config (default {DEFAULT_CONFIG.name})")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set optim.lr=3e-4 model.d_model=32 loss=pairwise",
    )
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's choice)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_filter_options(p)
    p.set_defaults(func=run, s_max=None)


def _overrides(args: argparse.Namespace) -> list[str]:
    """Shorthand flags as overrides, placed after --set so that they win."""
    out = list(args.set)
    if args.split is not None:
        out.append(f"data.split={args.split}")
    if args.seed is not None:
        out += [f"data.seed={args.seed}", f"optim.seed={args.seed}"]
    if args.min_interactions is not None:
        out.append(f"data.min_interactions={args.min_interactions}")
    if args.s_max is not None:
        out.append(f"data.s_max={args.s_max}")
    if args.train:
        out.append("data.split=train_file")
    return out


def set_threads(n: int) -> None:
    """Set torch's intra-op CPU threads (0 keeps torch's default of one per core).

    The default is 1: this model's operations are small, so extra threads gain little, and on
    a machine whose cores are busy with other work they stall in OpenMP hand-offs. Measured
    on the shared 2-core box (load ~4): 630-960 training samples/s with 1 thread, 95-125 with 2.
    """
    if n < 0:
        raise SegintError(f"--threads must be >= 0, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def run(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import train

    set_threads(args.threads)
    if bool(args.data) == bool(args.train):
        raise SegintError("give either --data FILE (with --split) or --train FILE")
    if args.train and args.split is not None:
        raise SegintError("--split applies to --data; with --train the file's last 10% validates")
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    cfg = load_config(config, _overrides(args))
    if args.features is not None:
        # Set on the parsed config, not as an override string: a path is not YAML.
        store = str(args.features.resolve())
        cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, store=store))
    uses_side = cfg.optim.distill > 0 or cfg.optim.video_trees > 0
    kuairand = log_format(args.format, args.data, args.train) == "kuairand"
    if not kuairand and uses_side and cfg.optim.distill_side_tables:
        # The teacher's and the video table's side tables are KuaiRand's, keyed by its ids: a
        # KuaiRand log, raw (--format kuairand) or prepared from one, gets them.
        optim = dataclasses.replace(cfg.optim, distill_side_tables=False)
        cfg = dataclasses.replace(cfg, optim=optim)
    if args.data and cfg.data.split not in SPLIT_METHODS:
        raise SegintError(f"data.split={cfg.data.split} needs --train, not --data")
    source = DataSource(
        data=args.data,
        split=cfg.data.split if args.data else "random_per_user",
        seed=cfg.data.seed,
        min_interactions=cfg.data.min_interactions,
        train=args.train,
        format=args.format,
        filters=filters_from_args(args, s_max=cfg.data.s_max),
    )
    loaded = source.load()
    table, split = loaded.table, loaded.split
    if os.environ.get("RANK", "0") == "0":
        provenance.write(args.out, loaded.provenance)
    result = train(cfg, table, split, args.out, device=args.device, progress=not args.no_progress)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    out = sys.stdout
    out.write(
        f"trained {result.steps} steps ({result.epochs:.2f} epochs) on {result.train_rows:,} rows "
        f"in {result.elapsed_s:.1f} s{' (early stop)' if result.stopped_early else ''}\n"
        f"best validation NDCG@5 ({cfg.optim.valid_protocol}) {result.best_metric:.4f} at step "
        f"{result.best_step} on {result.valid_rows:,} rows\n"
        f"wrote {args.out}/\n"
    )
    return 0
