"""Round-4 training options of `segrec.train`: the weight average (EMA) and the id-embedding
weight decay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from segint.errors import SegintError
from segint.splits import TRAIN, VALID, assign_split, history_index
from segint.vocab import Vocab
from segrec.config import SegRecConfig
from segrec.data import build_inputs
from segrec.labels import fit_label
from segrec.metrics import ctr_metrics
from segrec.train import TrainOptions, param_groups, predict, train_segrec, update_ema


def test_update_ema_by_hand() -> None:
    """average <- d * average + (1 - d) * model on parameters; buffers are copied."""
    avg, cur = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        avg.weight.copy_(torch.tensor([1.0, 2.0]))
        cur.weight.copy_(torch.tensor([3.0, -2.0]))
        cur.running_mean.copy_(torch.tensor([5.0, 6.0]))
    update_ema(avg, cur, 0.75)
    assert torch.allclose(avg.weight, torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * 2 - 0.25 * 2]))
    assert torch.equal(avg.running_mean, torch.tensor([5.0, 6.0]))
    assert torch.equal(cur.weight, torch.tensor([3.0, -2.0]))  # the model is untouched


def test_param_groups_decay_the_embeddings_only() -> None:
    from segrec.network import SegRecModel

    cfg = SegRecConfig("din", "video", n_users=5, n_videos=7, s_max=4, emb_dim=3)
    model = SegRecModel(cfg)
    groups = param_groups(model, TrainOptions(emb_weight_decay=1e-4))
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[0]["params"]} == emb
    rest = {id(p) for p in model.parameters()} - emb
    assert {id(p) for p in groups[1]["params"]} == rest and rest
    with pytest.raises(SegintError, match="ema must be in"):
        TrainOptions(ema=1.0)
    with pytest.raises(SegintError, match="weight decays >= 0"):
        TrainOptions(emb_weight_decay=-1.0)


@pytest.fixture(scope="module")
def small(fixture_table: pl.DataFrame) -> tuple[SegRecConfig, object, np.ndarray, np.ndarray]:
    split = assign_split(fixture_table, "random_per_user", 0)
    tr, va = np.flatnonzero(split == TRAIN), np.flatnonzero(split == VALID)
    t = fixture_table[tr]
    label = fit_label(t["play_time_ms"], t["duration_ms"], [0, 30, 60, 200])
    users, videos = Vocab(t["user_id"]), Vocab(t["video_id"])
    cfg = SegRecConfig("widedeep", "video", len(users), len(videos), s_max=40, emb_dim=4)
    hist = history_index(fixture_table, cfg.history_len)
    inputs = build_inputs(fixture_table, hist, users, videos, label, cfg.s_max)
    return cfg, inputs, tr, va


def test_ema_run_keeps_the_averaged_weights(
    tmp_path: Path, small: tuple[SegRecConfig, object, np.ndarray, np.ndarray]
) -> None:
    """With ema > 0 the saved weights are the average, not the last step's: they differ from
    the plain run's (same seed, same steps), and the validation AUC logged for the saved epoch
    is the AUC of the returned model."""
    cfg, inputs, tr, va = small
    runs = {}
    for ema in (0.0, 0.9):
        out = tmp_path / f"ema{ema}"
        out.mkdir()
        opts = TrainOptions(max_epochs=2, patience=5, batch_size=64, seed=3, ema=ema)
        model, result = train_segrec(cfg, inputs, tr, va, opts, out, progress=False)  # type: ignore[arg-type]
        probs = predict(model, inputs, va)  # type: ignore[arg-type]
        logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        best = logged[result.best_epoch - 1]["AUC"]
        assert ctr_metrics(inputs.label[va], probs)["AUC"] == pytest.approx(best, abs=1e-9)  # type: ignore[attr-defined]
        runs[ema] = probs
    assert not np.allclose(runs[0.0], runs[0.9])


def test_method_names_carry_the_training_options() -> None:
    """Runs with another optimiser are another method, compared with the Video run of the
    same options; the reference's options add nothing (older runs keep their names)."""
    from segrec.report import base_mode, method_name, summarize, versus_video, video_method

    reference = {"lr": 1e-3, "ema": 0.0, "emb_weight_decay": 0.0, "seed": 4}
    assert method_name("features+lin", reference) == "features+lin"
    assert method_name("video", {"lr": 1e-3}) == "video"  # an old run without the new keys
    tuned = {**reference, "ema": 0.99, "lr": 3e-4}
    name = method_name("features+lin", tuned)
    assert name == "features+lin@lr0.0003,ema0.99"
    assert base_mode(name) == "features" and base_mode("features-insample@wd1e-05") == "features"
    assert video_method(name) == "video@lr0.0003,ema0.99" == method_name("video", tuned)
    assert video_method("features+lin") == "video"

    def run(method: str, auc: float) -> dict[str, object]:
        metrics = {"AUC": auc, "F1": 0.5, "LogLoss": 0.6}
        return {"backbone": "din", "mode": base_mode(method), "method": method, "metrics": metrics}

    runs = [run("video", 0.60), run("video", 0.61), run("video@ema0.99", 0.65)]
    runs += [
        run("video@ema0.99", 0.66),
        run("features@ema0.99", 0.70),
        run("features@ema0.99", 0.71),
    ]
    vs = versus_video(summarize(runs))["din"]
    assert vs["features@ema0.99"]["AUC"]["delta"] == pytest.approx(0.05)  # not 0.10 (plain video)


def test_eval_every_validates_within_epochs_and_zero_init(
    tmp_path: Path, small: tuple[SegRecConfig, object, np.ndarray, np.ndarray]
) -> None:
    """eval_every = k: one validation line per k steps (patience in validations); the kept
    weights are the best line's. zero_init_dense starts the dense linear term at 0."""
    from dataclasses import replace

    from segrec.network import SegRecModel
    from segrec.train import zero_dense_linear

    cfg, inputs, tr, va = small
    steps_per_epoch = -(-len(tr) // 64)
    opts = TrainOptions(max_epochs=2, patience=100, batch_size=64, seed=1, eval_every=3)
    model, result = train_segrec(cfg, inputs, tr, va, opts, tmp_path, progress=False)  # type: ignore[arg-type]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(3, 2 * steps_per_epoch + 1, 3))
    best = max(lines, key=lambda x: x["AUC"])
    assert result.best_auc == best["AUC"] and result.best_epoch == best["epoch"]
    probs = predict(model, inputs, va)  # type: ignore[arg-type]
    assert ctr_metrics(inputs.label[va], probs)["AUC"] == pytest.approx(best["AUC"], abs=1e-9)  # type: ignore[attr-defined]
    # patience 1: stops at the first validation that is not better
    opts1 = replace(opts, patience=1)
    (tmp_path / "p1").mkdir()
    train_segrec(cfg, inputs, tr, va, opts1, tmp_path / "p1", progress=False)  # type: ignore[arg-type]
    aucs = [json.loads(x)["AUC"] for x in (tmp_path / "p1/metrics.jsonl").read_text().splitlines()]
    assert len(aucs) < len(lines)  # stopped early (seed 1 on the fixture)
    assert all(b > a for a, b in zip(aucs[:-2], aucs[1:-1], strict=True))  # improving ...
    assert aucs[-1] <= aucs[-2]  # ... until the first validation that is not better
    for backbone in ("widedeep", "din"):
        extra = {"dense_linear": True} if backbone == "din" else {}
        m = SegRecModel(SegRecConfig(backbone, "features", 5, 7, s_max=4, emb_dim=3, **extra))  # type: ignore[arg-type]
        zero_dense_linear(m)
        layer = m.backbone.wide_dense if backbone == "widedeep" else m.backbone.dense_linear
        assert layer is not None and torch.count_nonzero(layer.weight) == 0
