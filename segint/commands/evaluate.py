"""`segint evaluate`: score test rows with a trained model, next to every baseline.

Two sources, as for `segint baselines`:

* ``--train FILE --test FILE``: the test file's rows are scored; each row's history comes
  from the training file and earlier test rows (both tables, strictly earlier in time).
* ``--data FILE --split S --seed N``: re-creates the split the model was trained on (the
  split, seed and minimum interactions must match its config) and scores its test rows;
  histories come from the whole log, as in training.

Baselines fit on the training rows (plus validation rows for a split, as `segint baselines`
does; ``ItemPosition+prior|N``'s ``a`` is chosen on the validation rows the same way); cold
rows are test rows whose video is not among them. The model appears as ``"SegInterest"`` in
the report, which has the `segint.report` JSON layout.

Watch time (`segint.watchtime`): the model's validation rows (the split's, or the last 10% by
time of ``--train FILE``: the rows it was early-stopped on) choose a temperature for its
exit distribution by NLL; it is written to ``RUN/calibration.json`` (copied into the artifact
by `segint export`) and applied to ``SegInterest``'s distribution, so its ``MAE`` is that of
the served estimate (the median slot of the calibrated distribution). ``SegInterest(T=1)`` is
the uncalibrated distribution, for comparison. ``--predictions FILE.parquet`` writes one row
per test view for every method (`segint.predictions`).

``--learned hazard-gbdt[,...]`` adds learned baselines exactly as `segint baselines --learned`
fits them (the same fitting, validation and test rows; side tables as there). The report's
``paired`` entry (`segint.report.paired_differences`) holds ``SegInterest`` minus every other
method on the same rows, all and cold, with ``--bootstrap`` replicates (0: none): the
numbers `segint compare` gives on the ``--predictions`` file. So one call on a later week,

    segint evaluate --model RUN --train EARLY.csv --test LATER.csv --format kuairand \
        --learned hazard-gbdt --json report.json --predictions rows.parquet

reports the model, every lookup (``AllPosition|N``, ``ItemPosition+prior|N`` with its ``a``
chosen on the training file's last 10% by time) and the learned baselines side by side.

A content model reads its segment features from ``--features STORE``, by default the store it
was trained with (``features.store`` in its ``config.yaml``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint import provenance
from segint.commands import check_bootstrap, finite_float
from segint.commands.baselines import (
    add_baseline_options,
    add_learned_options,
    add_source_options,
    check_baseline_args,
    fit_baselines,
    fit_learned,
    learned_names,
    report_methods,
)
from segint.commands.data import source_from_args
from segint.commands.train import set_threads
from segint.data import log_format
from segint.errors import SegintError
from segint.splits import SPLIT_METHODS, TEST, TRAIN, VALID
from segint.video_table import read_run_table
from segint.vocab import Vocab
from segint.watchtime import apply_temperature, fit_temperature

log = logging.getLogger(__name__)
MODEL_NAME = "SegInterest"
UNCALIBRATED = "SegInterest(T=1)"
NETWORK = "SegInterest(network)"  # the network alone, calibrated, when the run has a table
SERVED = (
    "MAE: median exit slot of the temperature-scaled distribution over the N + 1 outcomes "
    "(the service's median_watch_ms); MAE_mean: its expected slot"
)


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained model next to the baselines")
    p.add_argument("--model", required=True, type=Path, help="run directory of `segint train`")
    add_source_options(p)
    add_baseline_options(p)
    p.add_argument(
        "--features", type=Path, help="segment feature store (default: the training run's)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per inference batch")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch (0 = torch's choice) and of the learned baselines (default 1)",
    )
    add_learned_options(p, threads=False)
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="bootstrap replicates of the paired differences SegInterest - every other method "
        "(default %(default)s; 0 = none; `segint compare` uses 1000)",
    )
    p.add_argument(
        "--temperature-by",
        choices=("mae", "nll"),
        default="mae",
        help="what chooses the watch-time temperature on validation rows: the served median's "
        "MAE (default) or the exit NLL",
    )
    p.add_argument(
        "--video-trees",
        type=finite_float,
        metavar="W",
        help="fit the run's per-video exit table on the fitting rows (stopped on the "
        "validation rows), served with share W in (0, 1], and write it to RUN/video_trees.npz "
        "(default: use the run's table when it has one)",
    )
    p.set_defaults(func=run)


def _check_same_split(args: argparse.Namespace, data_cfg: Any) -> None:
    """Refuse a split other than the training one: its test rows could be training rows."""
    if data_cfg.split not in SPLIT_METHODS:
        raise SegintError(
            f"the model was trained on a whole file (--train, data.split={data_cfg.split}); a "
            "split of a log could score rows it trained on: evaluate it with --train FILE "
            "--test LATER_FILE"
        )
    trained = (data_cfg.split, data_cfg.seed, data_cfg.min_interactions)
    asked = (args.split, args.seed, args.min_interactions)
    if trained != asked:
        raise SegintError(
            f"the model was trained on split {trained[0]} seed {trained[1]} (min interactions "
            f"{trained[2]}); evaluate with --split {trained[0]} --seed {trained[1]} "
            f"--min-interactions {trained[2]} (asked: {asked[0]} seed {asked[1]}, {asked[2]})"
        )


def _check_source(args: argparse.Namespace, asked: dict[str, Any]) -> None:
    """Refuse a source whose training file, filters or split differ from the model's.

    With --train/--test any split of the training file will do: the test file's rows that
    are in the training file are dropped.
    """
    trained = provenance.read(args.model)
    provenance.check_run(trained, asked, f"the model {args.model}", bool(args.data))


def load_rows(
    args: argparse.Namespace, data_cfg: Any
) -> tuple[pl.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], str]:
    """The table histories come from, the indices of its fitting and test rows, which fitting
    rows validate (the model's validation rows) and those rows in words.

    Refuses (SegintError) a source the model's test rows could have trained on; with
    ``--train A --test B`` drops the rows of B also in A. Leaves the source's provenance in
    ``args.provenance``.
    """
    if args.data is None and not (args.train and args.test):
        raise SegintError("give --data FILE, or --train FILE and --test FILE")
    source = source_from_args(args)
    if source.data:
        _check_same_split(args, data_cfg)
    loaded = source.load()
    if getattr(args, "model", None) is not None:
        _check_source(args, loaded.provenance)
    loaded.print_overlap()
    fit, test = loaded.rows(TRAIN, VALID), loaded.rows(TEST)
    if not len(fit) or not len(test):
        raise SegintError(f"empty split: {len(fit)} fitting rows, {len(test)} test rows")
    valid = loaded.split[fit] == VALID
    args.provenance = loaded.provenance
    return loaded.table, fit, test, valid, f"{loaded.valid_where} ({int(valid.sum()):,} rows)"


def run(args: argparse.Namespace) -> int:
    from segint.splits import history_index
    from training.checkpoint import load_model, load_run_config
    from training.data import InteractionDataset, open_content_store
    from training.inference import predict_logits, scores_and_exit_dist
    from training.train import select_device

    check_baseline_args(args)
    if args.batch_size < 1:
        raise SegintError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 0:
        raise SegintError(f"--threads must be >= 0, got {args.threads}")
    check_bootstrap(args.bootstrap)
    if args.video_trees is not None and not 0.0 < args.video_trees <= 1.0:
        raise SegintError(f"--video-trees must be in (0, 1], got {args.video_trees}")
    names = learned_names(args)  # checked before any data is read
    set_threads(args.threads)
    device = select_device(args.device)
    cfg = load_run_config(args.model)
    model, model_cfg, users, videos = load_model(args.model, device)
    if args.s_max != model_cfg.s_max:
        raise SegintError(f"--s-max {args.s_max} differs from the model's s_max {model_cfg.s_max}")
    store = open_content_store(
        args.features or cfg.features.store, model_cfg, cfg.features.l1_normalize
    )
    table, fit_rows, test_rows, valid, valid_where = load_rows(args, cfg.data)
    history = history_index(table, cfg.data.history_len)  # (n, H) over all rows
    valid_rows = fit_rows[valid]
    log.info("scoring %d validation rows with %s on %s", len(valid_rows), args.model, device)
    valid_data = InteractionDataset(
        table, history, valid_rows, users, videos, model_cfg.s_max, store
    )
    refreshed = cfg.optim.refresh_counts and not cfg.optim.refit and model_cfg.exit_prior > 0
    if refreshed:  # its counts hold the validation rows: score them with training-row counts
        from training.train import set_prior_counts, table_counts_args

        served = {k: v.clone() for k, v in model.state_dict().items()}
        set_prior_counts(model, *table_counts_args(table[fit_rows[~valid]], videos), device)
    valid_logits = predict_logits(model, valid_data, args.batch_size, device)
    if refreshed:
        model.load_state_dict(served)
    valid_tab = table[valid_rows]
    calibration = fit_temperature(
        valid_logits, valid_tab["exit_slot"], valid_tab["n_segments"], fitted_on=valid_where,
        criterion=args.temperature_by,
    )  # fmt: skip
    calibration.write(args.model)
    log.info(
        "watch-time temperature %.3f (validation NLL %.4f -> %.4f), wrote %s/calibration.json",
        calibration.temperature, calibration.nll_before, calibration.nll_after, args.model,
    )  # fmt: skip
    data = InteractionDataset(table, history, test_rows, users, videos, model_cfg.s_max, store)
    log.info("scoring %d test rows with %s on %s", len(test_rows), args.model, device)
    logits = predict_logits(model, data, args.batch_size, device)
    fit, test = table[fit_rows], table[test_rows]
    methods, settings = fit_baselines(args, fit, test, valid, valid_where, model_cfg.s_max)
    n_seg = test["n_segments"].to_numpy()
    scores, _ = scores_and_exit_dist(logits, n_seg)
    _, dist = scores_and_exit_dist(apply_temperature(logits, calibration.temperature), n_seg)
    methods[MODEL_NAME] = (scores, dist)
    methods[UNCALIBRATED] = scores_and_exit_dist(logits, n_seg)
    settings[MODEL_NAME] = {**calibration.to_dict(), "MAE_of": SERVED}
    if args.video_trees is not None:
        _fit_video_table(args, fit, valid, videos, model_cfg.s_max)
    video_table = read_run_table(args.model)  # the file, as export copies and the service reads it
    if video_table is not None:  # served: the network's distribution mixed with the table's
        video_table.check(len(videos), model_cfg.s_max, str(args.model))
        methods[NETWORK] = (scores, dist.copy())
        used = video_table.mix(dist, videos.lookup(test["video_id"].to_numpy()), n_seg)
        methods[MODEL_NAME] = (np.where(used[:, None], 1.0 - dist, scores), dist)
        settings[MODEL_NAME]["video_table"] = {
            "weight": video_table.weight,
            "mixed_rows": int(used.sum()),
            **video_table.meta,
        }
    if names:
        more, more_settings = fit_learned(
            args, names, fit, test, valid, valid_where, model_cfg.s_max
        )
        methods.update(more)
        settings.update(more_settings)
    report_methods(args, fit, test, methods, settings, paired_with=MODEL_NAME)
    return 0


def _fit_video_table(
    args: argparse.Namespace,
    fit: pl.DataFrame,
    valid: npt.NDArray[np.bool_],
    videos: Vocab,
    s_max: int,
) -> None:
    """``--video-trees W``: the run's per-video table, fitted as `segint train` fits it."""
    from training.side import kuairand_video_table
    from training.video_trees import fit_video_table

    # KuaiRand's side table (--video-table, --no-side-tables) for KuaiRand logs only, raw or
    # prepared, as `segint train` fits the table: other formats have other id spaces.
    fmt = log_format(args.format, args.data, args.train, args.test)
    kuairand = fmt == "kuairand" and not args.no_side_tables
    video_side = kuairand_video_table(args.video_table) if kuairand else None
    table = fit_video_table(
        fit, valid, videos, s_max, args.video_trees, args.seed, max(args.threads, 1), video_side
    )
    log.info("wrote %s", table.write(args.model))
