"""`segint segrec train|select|evaluate|table`: segment-integrated video CTR (spec section 4).

* ``train``: fit a WideDeep or DIN backbone in one mode (video, segsum, segmean, segadjust,
  itemposition, segrec) on the training rows of a split (``--data FILE --split S --seed N``)
  or of a file (``--train FILE``; its last 10% by time validate, as `segint train` does).
  Mode ``segrec`` takes frozen weights from ``--interest-model``, which must have been trained
  on the same split: its exit-slot training signal nearly determines the label.
  Configured by ``--config FILE`` (default ``configs/segrec.yaml``) and ``--set SECTION.KEY=VALUE``
  (`segrec.train_config`); ``--lr``, ``--emb-dim``, ... are shorthands for those keys.
* ``evaluate``: AUC / F1 / LogLoss of one or more runs on the test rows (``--data`` re-creates
  each run's split; ``--train FILE --test FILE`` scores the test file), plus per duration
  bucket; several runs of one method give the seeds' mean and spread.
* ``select``: the variant to serve (``segint export --segrec RUN``): among trained runs, the
  (backbone, method) with the best mean *validation* AUC over its seeds, and of it the run
  with the best validation AUC; test rows play no part. All runs must share one data source,
  split kind and filters.
* ``table``: the paper-style table (backbone x method, mean ± std, Welch p-values of SegRec vs
  the best baseline) from one or more ``evaluate --json`` files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint import provenance
from segint.commands import check_bootstrap, finite_float
from segint.commands.data import add_filter_options, source_from_args
from segint.data import FORMATS, Filters
from segint.errors import SegintError
from segint.source import TRAIN_FILE, DataSource
from segint.splits import (
    SPLIT_METHODS,
    TEST,
    TRAIN,
    VALID,
    history_index,
)
from segrec.config import BACKBONES, INTEREST_MODES, MODES

if TYPE_CHECKING:
    from segrec.train_config import SegRecTrainConfig

# `segint segrec train` flag (argparse dest) -> the config key it is a shorthand for.
_SHORTHANDS = {
    "split": "data.split",
    "seed": "data.seed",
    "min_interactions": "data.min_interactions",
    "s_max": "data.s_max",
    "bucket_edges": "data.bucket_edges",
    "backbone": "model.backbone",
    "mode": "model.mode",
    "history_len": "model.history_len",
    "emb_dim": "model.emb_dim",
    "hidden": "model.hidden",
    "activation": "model.activation",
    "dropout": "model.dropout",
    "learn_temperature": "model.learn_temperature",
    "effective_feature": "model.effective_feature",
    "dense_linear": "model.dense_linear",
    "lr": "optim.lr",
    "batch_size": "optim.batch_size",
    "max_epochs": "optim.max_epochs",
    "patience": "optim.patience",
    "calibrate": "optim.calibrate",
    "cross_fit": "crossfit.k",
    "cross_fit_epochs": "crossfit.epochs",
}

log = logging.getLogger(__name__)
# The resolved `segrec.train_config.SegRecTrainConfig` of a run (`--config` reads it back).
TRAIN_CONFIG_FILE = "train_config.yaml"


def register(sub: Any) -> None:
    p = sub.add_parser("segrec", help="SegRec: segment-weighted video CTR (train/evaluate/table)")
    actions = p.add_subparsers(dest="segrec_command", metavar="ACTION", parser_class=type(p))
    t = actions.add_parser("train", help="train one backbone x mode")
    t.add_argument("--config", type=Path, help="YAML config (default configs/segrec.yaml)")
    t.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set optim.lr=3e-4 model.hidden=[64,32] crossfit.k=0",
    )
    # Shorthands for config keys (`_SHORTHANDS`); None = not given, the config decides.
    t.add_argument("--backbone", choices=BACKBONES, help="model.backbone (required)")
    t.add_argument("--mode", choices=MODES, help="model.mode (required)")
    t.add_argument(
        "--interest-model",
        type=Path,
        help="run dir of `segint train` (modes segrec, survival, features)",
    )
    t.add_argument(
        "--cross-fit",
        type=int,
        metavar="K",
        help="crossfit.k: interest inputs of training rows from K fold models that did not "
        "train on them (default 5; 0 = the interest model's own, in-sample)",
    )
    t.add_argument(
        "--cross-fit-epochs",
        type=int,
        help="crossfit.epochs: max epochs of each fold model (default: the interest run's "
        "optim.max_epochs)",
    )
    t.add_argument(
        "--cross-fit-dir",
        type=Path,
        help="where fold models are cached (default INTEREST_MODEL/crossfit_kK)",
    )
    _source_options(t, evaluate=False)
    t.add_argument("--out", required=True, type=Path, help="run directory to write")
    t.add_argument("--bucket-edges", help="data.bucket_edges: seconds, comma separated")
    t.add_argument("--emb-dim", type=int, help="model.emb_dim")
    t.add_argument("--hidden", help="model.hidden: deep MLP widths, comma separated")
    t.add_argument("--history-len", type=int, help="model.history_len: DIN history views")
    t.add_argument("--activation", choices=("dice", "prelu"), help="model.activation: DIN MLPs")
    t.add_argument("--dropout", type=finite_float, help="model.dropout")
    t.add_argument(
        "--learn-temperature",
        action="store_true",
        default=None,
        help="model.learn_temperature: segrec/itemposition: softmax(t p), t learned",
    )
    t.add_argument(
        "--effective-feature",
        action="store_true",
        default=None,
        help="model.effective_feature: mode features: add P(play > the label's threshold) "
        "under the exit distribution",
    )
    t.add_argument(
        "--dense-linear",
        action="store_true",
        default=None,
        help="model.dense_linear: DIN, mode features: the interest features enter as a "
        "linear term on the logit",
    )
    t.add_argument(
        "--calibrate",
        action="store_true",
        default=None,
        help="optim.calibrate: Platt-scale the output logit on the validation rows",
    )
    t.add_argument("--lr", type=finite_float, help="optim.lr")
    t.add_argument("--batch-size", type=int, help="optim.batch_size")
    t.add_argument("--max-epochs", type=int, help="optim.max_epochs")
    t.add_argument("--patience", type=int, help="optim.patience: epochs without better valid AUC")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's choice)")
    t.add_argument("--no-progress", action="store_true")
    add_filter_options(t)
    t.set_defaults(func=run_train, s_max=None)  # --s-max: data.s_max
    e = actions.add_parser("evaluate", help="test metrics of trained runs (seeds: mean, spread)")
    e.add_argument("--model", required=True, type=Path, nargs="+", help="SegRec run dirs")
    _source_options(e, evaluate=True)
    e.add_argument("--interest-model", type=Path, help="override the runs' interest model")
    e.add_argument("--json", type=Path, help="write the results here")
    e.add_argument(
        "--uncalibrated",
        action="store_true",
        help="ignore the runs' Platt scaling (train --calibrate): the raw backbone output",
    )
    e.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="resamples of the paired (same rows) differences vs Video (0 = none)",
    )
    e.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's choice)")
    e.set_defaults(func=run_evaluate)
    tb = actions.add_parser("table", help="paper-style table from evaluate --json files")
    tb.add_argument("results", nargs="+", type=Path, help="JSON files of `segrec evaluate`")
    tb.add_argument("--by-bucket", action="store_true", help="also AUC per duration bucket")
    tb.add_argument("--json", type=Path, help="write summary and p-values here")
    tb.set_defaults(func=run_table)
    sel = actions.add_parser(
        "select", help="the variant to serve: best mean validation AUC over seeds"
    )
    sel.add_argument("--model", required=True, type=Path, nargs="+", help="SegRec run dirs")
    sel.add_argument("--json", type=Path, help="write every variant's validation AUC here")
    sel.set_defaults(func=run_select)


def _source_options(p: argparse.ArgumentParser, evaluate: bool) -> None:
    p.add_argument("--data", help="one log to split (with --split / --seed)")
    # train: shorthands of data.split / data.seed / data.min_interactions
    p.add_argument("--split", choices=SPLIT_METHODS)
    p.add_argument("--seed", type=int, help="split (and init) seed")
    p.add_argument("--min-interactions", type=int)
    p.add_argument("--train", help="training log (train: last 10%% by time validates)")
    if evaluate:
        p.add_argument("--test", help="test log (with --train)")
    p.add_argument("--format", choices=FORMATS, help="raw log format; omit for prepared data")


def _csv(text: str, kind: type, name: str) -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SegintError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise SegintError(f"--{name} must be finite numbers, got {text!r}")
    return values


def _load(source: dict[str, Any], filters: Filters) -> tuple[pl.DataFrame, npt.NDArray[np.int8]]:
    """The table and its split (0 train, 1 valid, 2 test, -1 unused) of a source description
    (`segint.source.DataSource.load`); adds its provenance to ``source["provenance"]``."""
    src = DataSource.from_dict(source, filters)
    loaded = src.load()
    loaded.print_overlap()
    source["provenance"] = loaded.provenance
    return loaded.table, loaded.split


def _check_interest_source(interest_model: Path, source: dict[str, Any]) -> None:
    """Refuse an interest model trained on another file, filters or split than SegRec's
    source: it could have trained on SegRec's test rows, whose labels its exits nearly give."""
    trained = provenance.read(interest_model)
    provenance.check_run(trained, source["provenance"], f"the interest model {interest_model}")


def _check_run_source(model_dir: Path, run_source: dict[str, Any], source: dict[str, Any]) -> None:
    """Refuse evaluating a SegRec run on a file or filters other than its training ones."""
    provenance.check_run(
        run_source.get("provenance"),
        source["provenance"],
        f"the SegRec run {model_dir}",
        source["kind"] == "split",
    )


def _source_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if not args.data and not args.train:
        raise SegintError("give --data FILE (with --split and --seed) or --train FILE")
    return source_from_args(args).to_dict()


def _weight_logits(
    mode: str,
    interest_model: Path | None,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    rows: npt.NDArray[np.int64],
    source: dict[str, Any],
    s_max: int,
    crossfit: dict[str, Any] | None = None,
) -> npt.NDArray[np.float32] | None:
    """(n, S) weight logits (filled on ``rows``) for the ItemPosition and interest modes, else None.

    With ``crossfit`` (``{"k", "epochs", "dir"}``), the training rows among ``rows`` get
    out-of-fold logits (`segrec.interest.crossfit_logits`); every other row gets the interest
    model's own, as in serving.
    """
    from segrec.interest import (
        check_interest_split,
        crossfit_logits,
        interest_logits,
        itemposition_logits,
    )

    out = np.zeros((table.height, s_max), dtype=np.float32)
    if mode == "itemposition":  # profiles of the training rows only
        out[rows] = itemposition_logits(table.filter(pl.Series(split == TRAIN)), table[rows], s_max)
        return out
    if mode not in INTEREST_MODES:
        return None
    if interest_model is None:
        raise SegintError(f"mode {mode} needs --interest-model DIR (a `segint train` run)")
    kind = str(source["split"]) if source["kind"] == "split" else TRAIN_FILE
    check_interest_split(
        interest_model, kind, source.get("seed", 0), source.get("min_interactions", 1)
    )
    _check_interest_source(interest_model, source)
    own = rows
    if crossfit is not None and np.any(split[rows] == TRAIN):
        train_rows = np.flatnonzero(split == TRAIN)
        oof = crossfit_logits(
            interest_model, table, split, crossfit["k"], crossfit["dir"], crossfit["epochs"]
        )
        wanted = np.isin(train_rows, rows)
        out[train_rows[wanted]] = oof[wanted]
        own = rows[split[rows] != TRAIN]
    if len(own):
        out[own] = interest_logits(interest_model, table, own, s_max=s_max)
    return out


def _train_config(args: argparse.Namespace) -> SegRecTrainConfig:
    """The config of ``--config`` (default ``configs/segrec.yaml``), then ``--set``, then the
    shorthand flags that were given."""
    from segrec.train_config import DEFAULT_CONFIG, apply_overrides, from_dict, read_yaml

    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    raw = apply_overrides(read_yaml(config) if config is not None else {}, args.set)
    if args.cross_fit_epochs is not None and args.cross_fit_epochs < 1:
        raise SegintError(f"--cross-fit-epochs must be >= 1, got {args.cross_fit_epochs}")
    for dest, key in _SHORTHANDS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if dest == "hidden":
            value = _csv(value, int, "hidden")
        elif dest == "bucket_edges":
            value = _csv(value, float, "bucket-edges")
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    cfg = from_dict(raw)
    for name in ("backbone", "mode"):
        if not getattr(cfg.model, name):
            raise SegintError(f"give --{name} (config key model.{name})")
    return cfg


def run_train(args: argparse.Namespace) -> int:
    from segint.commands.train import set_threads
    from segint.vocab import Vocab
    from segrec.config import SegRecConfig
    from segrec.data import build_inputs
    from segrec.labels import fit_label, thresholds_by_n
    from segrec.train import TrainOptions, train_segrec, write_run
    from segrec.train_config import save_config

    set_threads(args.threads)
    run_cfg = _train_config(args)
    data, m, optim = run_cfg.data, run_cfg.model, run_cfg.optim
    if args.train and data.min_interactions != 1:
        raise SegintError("--min-interactions applies to --data splits only")
    # the data source reads these from the namespace, as in every other command
    args.split, args.seed = data.split, data.seed
    args.min_interactions, args.s_max = data.min_interactions, data.s_max
    source = _source_from_args(args)
    filters = Filters(**source["filters"])
    opts = TrainOptions(
        lr=optim.lr,
        batch_size=optim.batch_size,
        max_epochs=optim.max_epochs,
        patience=optim.patience,
        seed=data.seed,
        ema=optim.ema,
        emb_weight_decay=optim.emb_weight_decay,
        eval_every=optim.eval_every,
        zero_init_dense=optim.zero_init_dense,
    )
    table, split = _load(source, filters)
    train_rows, valid_rows = np.flatnonzero(split == TRAIN), np.flatnonzero(split == VALID)
    if len(train_rows) == 0 or len(valid_rows) == 0:
        raise SegintError(
            f"empty split: {len(train_rows)} training, {len(valid_rows)} validation rows"
        )
    tr = table[train_rows]
    try:
        label = fit_label(tr["play_time_ms"], tr["duration_ms"], list(data.bucket_edges))
        users, videos = Vocab(tr["user_id"]), Vocab(tr["video_id"])
        cfg = SegRecConfig(
            backbone=m.backbone,
            mode=m.mode,
            n_users=len(users),
            n_videos=len(videos),
            s_max=data.s_max,
            history_len=m.history_len,
            emb_dim=m.emb_dim,
            hidden=m.hidden,
            activation=m.activation,
            dropout=m.dropout,
            learn_temperature=m.learn_temperature,
            effective_thresholds=thresholds_by_n(label, data.s_max) if m.effective_feature else (),
            dense_linear=m.dense_linear,
            dense_both=m.dense_both,
        )
    except ValueError as e:
        raise SegintError(str(e)) from None
    if m.standardize_dense and m.mode != "features":
        raise SegintError(f"model.standardize_dense applies to mode features, not {m.mode}")
    rows = np.concatenate([train_rows, valid_rows])
    used = m.mode in INTEREST_MODES and args.interest_model is not None
    crossfit = _crossfit(run_cfg, args.interest_model, args.cross_fit_dir) if used else None
    weights = _weight_logits(
        m.mode, args.interest_model, table, split, rows, source, cfg.s_max, crossfit
    )
    if m.standardize_dense and weights is not None:
        from segrec.network import dense_statistics

        n_seg = table["n_segments"].to_numpy().astype(np.int64)[train_rows]
        centre, scale = dense_statistics(cfg, weights[train_rows], n_seg)
        cfg = replace(cfg, dense_center=centre, dense_scale=scale)
    inputs = build_inputs(
        table, history_index(table, cfg.history_len), users, videos, label, cfg.s_max, weights
    )
    interest = str(args.interest_model.resolve()) if used else None
    if crossfit is not None:
        crossfit = {**crossfit, "dir": str(Path(crossfit["dir"]).resolve())}
    write_run(args.out, cfg, label, users, videos, source, opts, interest, crossfit)
    save_config(run_cfg, args.out / TRAIN_CONFIG_FILE)
    model, result = train_segrec(
        cfg, inputs, train_rows, valid_rows, opts, args.out, not args.no_progress
    )
    if optim.calibrate:
        _calibrate(args.out, model, inputs, valid_rows)
    sys.stdout.write(
        f"trained {m.backbone}/{m.mode} for {result.epochs} epochs on {result.train_rows:,} rows "
        f"in {result.elapsed_s:.1f} s\nbest validation AUC {result.best_auc:.4f} at epoch "
        f"{result.best_epoch} on {result.valid_rows:,} rows\nwrote {args.out}/\n"
    )
    return 0


def _calibrate(out: Path, model: Any, inputs: Any, valid_rows: Any) -> None:
    """Fit Platt scaling on the validation rows and store it in the run's config."""
    from segrec.metrics import ctr_metrics
    from segrec.train import RUN_FILE, fit_platt, predict

    probs = predict(model, inputs, valid_rows)
    labels = inputs.label[valid_rows]
    a, b = fit_platt(labels, probs)
    model.cfg = replace(model.cfg, calibration=(a, b))
    after = ctr_metrics(labels, predict(model, inputs, valid_rows))
    run = json.loads((out / RUN_FILE).read_text())
    run["model"] = model.cfg.to_dict()
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    log.info(
        "Platt scaling a=%.4f b=%.4f on %d validation rows: LogLoss %.4f -> %.4f",
        a,
        b,
        len(valid_rows),
        ctr_metrics(labels, probs)["LogLoss"],
        after["LogLoss"],
    )


def _crossfit(
    run_cfg: SegRecTrainConfig, interest_model: Path, folder: Path | None
) -> dict[str, Any] | None:
    """``{"k", "epochs", "dir"}`` of ``crossfit.k`` (None when it is 0, i.e. in-sample)."""
    k = run_cfg.crossfit.k
    if k == 0:
        return None
    epochs = run_cfg.crossfit.epochs or None  # None: the interest run's optim.max_epochs
    folder = folder or interest_model / f"crossfit_k{k}"
    return {"k": k, "epochs": epochs, "dir": str(folder)}


def _eval_source(args: argparse.Namespace, trained: dict[str, Any]) -> dict[str, Any]:
    """The evaluation source of one run: its own split of --data, or --train/--test."""
    fmt = args.format if args.format is not None else trained.get("format")
    if args.data and (args.train or args.test):
        raise SegintError("give either --data (with --split) or --train and --test, not both")
    if args.data:
        if trained["kind"] != "split":
            raise SegintError(
                "this run was trained with --train; evaluate it with --train and --test"
            )
        src = {"kind": "split", "data": str(args.data), "format": fmt}
        for key in ("split", "seed", "min_interactions"):
            asked = getattr(args, key)
            if asked is not None and asked != trained[key]:
                raise SegintError(
                    f"the run was trained on {key} {trained[key]}, not {asked}: its test rows "
                    "would overlap its training rows"
                )
            src[key] = trained[key]
        return src
    if args.train and args.test:
        return {"kind": TRAIN_FILE, "train": str(args.train), "test": str(args.test), "format": fmt}
    raise SegintError("give --data FILE, or --train FILE and --test FILE")


def _bucket_metrics(labels: Any, probs: Any, buckets: Any, edges: list[float]) -> dict[str, Any]:
    from segrec.metrics import auc

    out: dict[str, Any] = {}
    for k in range(len(edges) - 1):
        rows = buckets == k
        out[f"{edges[k]:g}-{edges[k + 1]:g}s"] = {
            "rows": int(rows.sum()),
            "positive_rate": float(labels[rows].mean()) if rows.any() else float("nan"),
            "AUC": auc(labels[rows], probs[rows]),
        }
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    from segint.commands.train import set_threads
    from segrec.data import build_inputs
    from segrec.metrics import ctr_metrics
    from segrec.report import format_table, method_name, paired_table, significance, summarize
    from segrec.train import load_run, predict

    check_bootstrap(args.bootstrap)
    set_threads(args.threads)
    loaded: dict[str, tuple[pl.DataFrame, npt.NDArray[np.int8], dict[str, Any]]] = {}
    histories: dict[tuple[str, int], Any] = {}
    runs: list[dict[str, Any]] = []
    preds: list[tuple[str, Any, Any]] = []  # (test rows key, labels, probabilities) per run
    weight_cache: dict[tuple[str, int, str], Any] = {}
    for model_dir in args.model:
        run = load_run(model_dir)
        source = _eval_source(args, run.source)
        filters = Filters(**run.source["filters"])
        key = json.dumps([source, asdict(filters)], sort_keys=True)
        if key not in loaded:
            loaded[key] = (*_load(source, filters), source["provenance"])
        table, split, source["provenance"] = loaded[key]
        _check_run_source(model_dir, run.source, source)
        test_rows = np.flatnonzero(split == TEST)
        if len(test_rows) == 0:
            raise SegintError(f"no test rows in {source}")
        cfg = run.cfg
        if args.uncalibrated:
            cfg = run.model.cfg = replace(cfg, calibration=(1.0, 0.0))
        if (key, cfg.history_len) not in histories:
            histories[key, cfg.history_len] = history_index(table, cfg.history_len)
        interest = args.interest_model or (Path(run.interest_model) if run.interest_model else None)
        # every interest mode of one interest model reads the same test-row logits: once
        wkey = (key, cfg.s_max, str(interest) if cfg.mode in INTEREST_MODES else cfg.mode)
        if wkey not in weight_cache:
            weight_cache[wkey] = _weight_logits(
                cfg.mode, interest, table, split, test_rows, source, cfg.s_max
            )
        weights = weight_cache[wkey]
        inputs = build_inputs(
            table,
            histories[key, cfg.history_len],
            run.users,
            run.videos,
            run.label,
            cfg.s_max,
            weights,
        )
        # interest inputs of the training rows not cross-fitted (runs before cross-fitting too)
        in_sample = cfg.mode in INTEREST_MODES and run.crossfit is None
        probs = predict(run.model, inputs, test_rows)
        labels = inputs.label[test_rows]
        buckets = run.label.bucket(table["duration_ms"].to_numpy()[test_rows])
        runs.append(
            {
                "model": str(model_dir),
                "backbone": cfg.backbone,
                "mode": cfg.mode,
                "method": method_name(cfg.method + ("-insample" if in_sample else ""), run.train),
                "seed": run.train.get("seed"),
                "source": source,
                "rows": len(test_rows),
                "positive_rate": float(labels.mean()),
                "metrics": ctr_metrics(labels, probs),
                "by_bucket": _bucket_metrics(labels, probs, buckets, list(run.label.edges_s)),
            }
        )
        log.info("%s: %s", model_dir, runs[-1]["metrics"])
        preds.append((key, labels, probs))
    summary = summarize(runs)
    paired = _paired_vs_video(runs, preds, args.bootstrap) if args.bootstrap > 0 else {}
    result = {
        "metrics": {b: {m: s["mean"] for m, s in modes.items()} for b, modes in summary.items()},
        "std": {b: {m: s["std"] for m, s in modes.items()} for b, modes in summary.items()},
        "paired_vs_video": paired,
        "runs": runs,
    }
    sys.stdout.write(format_table(summary, significance(summary)) + "\n")
    if paired:
        sys.stdout.write("\n" + paired_table(paired) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


def _paired_vs_video(
    runs: list[dict[str, Any]], preds: list[tuple[str, Any, Any]], n_boot: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """backbone -> method -> metric -> ``{"delta", "se", "pairs"}``: each interest method's
    run minus the Video run of the same backbone, seed and training options
    (`segrec.report.video_method`), on the same test rows.

    Pairs on the same rows (every seed of a temporal split or file pair) are bootstrapped
    together, one resample for all seeds; groups on different rows (random_per_user seeds)
    are independent and their errors combine by the weighted root sum of squares.
    """
    from segrec.metrics import paired_bootstrap
    from segrec.report import base_mode, video_method

    video = {
        (r["backbone"], r["seed"], p[0], r["method"]): p
        for r, p in zip(runs, preds, strict=True)
        if base_mode(r["method"]) == "video"
    }
    groups: dict[tuple[str, str], dict[str, list[tuple[Any, Any, Any]]]] = {}
    for r, (key, labels, probs) in zip(runs, preds, strict=True):
        base = video.get((r["backbone"], r["seed"], key, video_method(r["method"])))
        if base is None or base_mode(r["method"]) not in INTEREST_MODES:
            continue
        groups.setdefault((r["backbone"], r["method"]), {}).setdefault(key, []).append(
            (labels, probs, base[2])
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (backbone, method), by_rows in groups.items():
        total = sum(len(v) for v in by_rows.values())
        parts = []
        for pairs in by_rows.values():
            a = np.stack([p[1] for p in pairs])  # (k, n)
            b = np.stack([p[2] for p in pairs])
            parts.append((len(pairs) / total, paired_bootstrap(pairs[0][0], a, b, n_boot)))
        out.setdefault(backbone, {})[method] = {
            m: {
                "delta": float(sum(w * d[m][0] for w, d in parts)),
                "se": float(np.sqrt(sum((w * d[m][1]) ** 2 for w, d in parts))),
                "pairs": total,
            }
            for m in ("AUC", "LogLoss")
        }
    return out


def run_table(args: argparse.Namespace) -> int:
    from segrec.report import bucket_table, format_table, significance, summarize, versus_video

    runs: dict[str, dict[str, Any]] = {}
    for path in args.results:
        try:
            data = json.loads(path.read_text())
            items = data["runs"]
            assert isinstance(items, list)
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            raise SegintError(f"{path}: not a `segint segrec evaluate --json` file") from None
        for r in items:
            runs[r["model"]] = r  # a run listed in several files counts once
    summary = summarize(runs.values())
    tests = significance(summary)
    sys.stdout.write(format_table(summary, tests) + "\n")
    if args.by_bucket:
        sys.stdout.write("\n" + bucket_table(runs.values()) + "\n")
    if args.json:
        vs_video = versus_video(summary)
        args.json.write_text(
            json.dumps({"summary": summary, "tests": tests, "vs_video": vs_video}, indent=2)
        )
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from segrec.metrics import mean_std
    from segrec.report import method_name
    from segrec.train import load_run

    groups: dict[str, list[tuple[float, Path]]] = {}
    sources: set[str] = set()
    for model_dir in args.model:
        run = load_run(model_dir)
        if run.valid_auc is None:
            raise SegintError(f"{model_dir}: no validation AUC in its metrics.jsonl")
        # seeds may differ (a random split's validation rows then differ per seed, as in
        # the reported means); the data, split kind and filters may not
        same = {k: v for k, v in run.source.items() if k not in ("seed", "provenance")}
        if "provenance" in run.source:  # the bytes of the training file, not only its path
            same["sha256"] = provenance.training_file(run.source["provenance"])["sha256"]
        sources.add(json.dumps(same, sort_keys=True))
        in_sample = run.cfg.mode in INTEREST_MODES and run.crossfit is None
        name = method_name(run.cfg.method + ("-insample" if in_sample else ""), run.train)
        method = f"{run.cfg.backbone}/{name}"
        groups.setdefault(method, []).append((run.valid_auc, Path(model_dir)))
    if len(sources) > 1:
        raise SegintError("the runs come from different data, splits or filters")
    table = {m: mean_std([auc for auc, _ in runs]) for m, runs in groups.items()}
    best = max(table, key=lambda m: table[m][0])
    chosen = max(groups[best], key=lambda r: r[0])[1]
    for method, (mean, std) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        sys.stderr.write(
            f"{method}: validation AUC {mean:.4f} ± {std:.4f} ({len(groups[method])} runs)\n"
        )
    sys.stdout.write(f"{chosen}\n")
    if args.json:
        out = {
            "chosen": str(chosen),
            "variant": best,
            "valid_auc": {m: {"mean": v[0], "std": v[1]} for m, v in table.items()},
        }
        args.json.write_text(json.dumps(out, indent=2))
    return 0
