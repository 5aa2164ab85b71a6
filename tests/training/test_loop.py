"""The training loop on generated logs with the tiny config: learning, seeds, early stopping,
best checkpoint, metrics file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from segint.errors import DataError, SegintError
from segint.splits import TRAIN, VALID, assign_split, history_index
from tests.training.conftest import TINY
from training.checkpoint import load_model, load_run_config
from training.config import load_config
from training.data import InteractionDataset
from training.inference import evaluate_dataset
from training.train import train


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_batch_overfits_through_the_real_loop(tmp_path: Path) -> None:
    """13 views (one batch) are memorised: loss falls and their exits rank first.

    The validation rows are copies of the training rows, so the kept (best) checkpoint is
    the one that fits them best.
    """
    rng = np.random.default_rng(1)
    n = 13
    n_seg = rng.integers(3, 12, n)
    exit_ = np.array([rng.integers(0, k + 1) for k in n_seg])  # any of the N + 1 outcomes
    rows = pl.DataFrame(
        {
            "user_id": np.arange(n) % 4,
            "video_id": np.arange(n) + 50,
            "time_ms": np.arange(n) * 1000,
            "duration_ms": n_seg * 5000 - 10,
            "play_time_ms": np.where(exit_ == n_seg, n_seg * 5000, exit_ * 5000 + 100),
            "n_segments": n_seg,
            "exit_slot": exit_,
        }
    )
    # Copies at the same timestamps: never in each other's history, same inputs as training.
    table = pl.concat([rows, rows]).sort(["user_id", "time_ms"], maintain_order=True)
    split = np.tile(np.array([TRAIN, VALID], dtype=np.int8), n)
    cfg = load_config(
        TINY,
        ["optim.lr=0.03", "optim.max_epochs=60", "optim.eval_every=20", "optim.patience=100"],
    )
    result = train(cfg, table, split, tmp_path / "run", device="cpu", progress=False)
    lines = _metrics(tmp_path / "run")
    assert result.steps == 60 and len(lines) == 3
    assert lines[-1]["train_loss"] < 0.1 * lines[0]["train_loss"]
    assert lines[-1]["valid"]["strict"]["HR@1"] >= 12 / 13
    assert result.best_metric >= 0.95


def _train_tiny(table: pl.DataFrame, out: Path, *overrides: str):
    cfg = load_config(TINY, list(overrides))
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    return train(cfg, table, split, out, device="cpu", progress=False)


def test_same_seed_gives_identical_weights_and_metrics(table: pl.DataFrame, tmp_path: Path) -> None:
    """Two CPU runs with one seed are bit-identical; another seed differs."""
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        _train_tiny(
            table, tmp_path / name, f"optim.seed={seed}", "model.dropout=0.1", "optim.max_epochs=1"
        )
        state = torch.load(tmp_path / name / "model.pt", weights_only=True)
        runs[name] = (state, [{**m, "elapsed_s": 0} for m in _metrics(tmp_path / name)])
    (sa, ma), (sb, mb), (sc, _) = runs["a"], runs["b"], runs["c"]
    assert ma == mb
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_best_checkpoint_is_kept_and_metrics_logged(table: pl.DataFrame, tmp_path: Path) -> None:
    """model.pt reproduces the best validation line exactly; each line has the expected keys."""
    run = tmp_path / "run"
    result = _train_tiny(
        table, run, "optim.max_epochs=2", "optim.eval_every=4", "optim.patience=100"
    )
    lines = _metrics(run)
    assert [m["step"] for m in lines] == list(range(4, result.steps, 4)) + [result.steps]
    assert set(lines[0]) == {"step", "epoch", "train_loss", "valid", "best_step", "elapsed_s"}
    assert set(lines[0]["valid"]) == {"paper", "strict"}
    best = max(lines, key=lambda m: m["valid"]["strict"]["NDCG@5"])
    assert result.best_step == lines[-1]["best_step"] == best["step"]
    # Rebuild from disk and re-score the validation rows.
    cfg = load_run_config(run)
    model, model_cfg, users, videos = load_model(run)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    valid = InteractionDataset(
        table, history_index(table, cfg.data.history_len), np.flatnonzero(split == VALID),
        users, videos, model_cfg.s_max,
    )  # fmt: skip
    again = evaluate_dataset(model, valid, 64, "cpu", seed=cfg.optim.seed)
    assert again["strict"]["NDCG@5"] == pytest.approx(best["valid"]["strict"]["NDCG@5"], abs=1e-12)
    assert again["paper"]["MAE"] == pytest.approx(best["valid"]["paper"]["MAE"], abs=1e-12)


def test_early_stopping_after_patience(table: pl.DataFrame, tmp_path: Path) -> None:
    """With a learning rate too small to change anything, training stops after 1 + patience
    validations."""
    result = _train_tiny(
        table, tmp_path / "run", "optim.lr=1e-30", "optim.eval_every=3", "optim.patience=2",
        "optim.max_epochs=50",
    )  # fmt: skip
    assert result.stopped_early and result.steps == 9 and result.best_step == 3
    assert len(_metrics(tmp_path / "run")) == 3


def test_no_validation_rows_and_content_modality_are_errors(
    table: pl.DataFrame, tmp_path: Path
) -> None:
    """Clear errors instead of a crash deep inside the loop."""
    cfg = load_config(TINY)
    with pytest.raises(DataError, match="no validation rows"):
        train(
            cfg,
            table,
            np.zeros(table.height, np.int8),
            tmp_path / "a",
            device="cpu",
            progress=False,
        )
    cfg = load_config(TINY, ["model.modalities=[id,content]", "model.content_dim=4"])
    split = assign_split(table, "random_per_user", 0)
    with pytest.raises(SegintError, match="content"):
        train(cfg, table, split, tmp_path / "b", device="cpu", progress=False)


def test_refit_retrains_on_train_and_valid_for_the_best_step_count(
    table: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """optim.refit: the shipped model knows the validation rows' ids, trained best_step steps;
    its phase logs the steps it trained, not a validation metric it has none of."""
    run = tmp_path / "run"
    caplog.set_level("INFO", logger="training.train")
    result = _train_tiny(
        table,
        run,
        "optim.max_epochs=2",
        "optim.eval_every=3",
        "optim.patience=100",
        "optim.refit=true",
    )
    cfg = load_run_config(run)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    fit = np.isin(split, (TRAIN, VALID))
    model, model_cfg, users, videos = load_model(run)
    assert np.array_equal(videos.ids, np.unique(table["video_id"].to_numpy()[fit]))
    assert model_cfg.n_videos == len(videos)
    refit = _metrics(run)[-1]["refit"]
    assert refit == {"rows": int(fit.sum()), "steps": result.best_step}
    assert f"trained {result.best_step} steps without validation" in caplog.text
    assert "nan" not in caplog.text
    assert all(torch.isfinite(p).all() for p in model.parameters())
    _assert_exit_counts(model, table, fit, videos)


def _assert_exit_counts(model, table: pl.DataFrame, rows: np.ndarray, videos) -> None:
    """The checkpoint's exit-count buffer holds exactly the exits of ``rows``, per video."""
    s = model.cfg.s_max
    expected = np.zeros((len(videos), s))
    exits = table["exit_slot"].to_numpy()[rows]
    idx = videos.lookup(table["video_id"].to_numpy()[rows])
    np.add.at(expected, (idx[exits < s], exits[exits < s]), 1)
    assert expected.sum() > 0
    np.testing.assert_array_equal(model.decoder.exit_counts.numpy(), expected)


def test_exit_counts_come_from_the_training_rows(table: pl.DataFrame, tmp_path: Path) -> None:
    """exit_prior models ship the training rows' exit counts (not validation's) as a buffer."""
    run = tmp_path / "run"
    _train_tiny(table, run, "optim.max_epochs=1")
    cfg = load_run_config(run)
    model, model_cfg, _, videos = load_model(run)
    assert model_cfg.exit_prior == 1.0
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    _assert_exit_counts(model, table, split == TRAIN, videos)


def test_refresh_counts_ships_train_and_valid_counts_with_the_chosen_weights(
    table: pl.DataFrame, tmp_path: Path
) -> None:
    """optim.refresh_counts: the checkpoint keeps the early-stopped weights and vocabulary but
    its exit counts are those of training + validation rows (the baselines' fitting rows)."""
    plain, fresh = tmp_path / "plain", tmp_path / "fresh"
    _train_tiny(table, plain, "optim.max_epochs=1")
    _train_tiny(table, fresh, "optim.max_epochs=1", "optim.refresh_counts=true")
    cfg = load_run_config(fresh)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    a, _, _, videos_a = load_model(plain)
    b, _, _, videos_b = load_model(fresh)
    assert np.array_equal(videos_a.ids, videos_b.ids)
    _assert_exit_counts(b, table, np.isin(split, (TRAIN, VALID)), videos_b)
    _assert_exit_counts(a, table, split == TRAIN, videos_a)
    wa, wb = a.state_dict(), b.state_dict()
    for name in wa:
        if "exit_counts" not in name and "global_exit" not in name:
            torch.testing.assert_close(wa[name], wb[name], msg=name)
    assert _metrics(fresh)[-1] == {
        "refresh_counts": {"rows": int(np.isin(split, (TRAIN, VALID)).sum())}
    }


def test_n_prior_stats_and_side_features_are_trained_saved_and_reloaded(
    table: pl.DataFrame, tmp_path: Path
) -> None:
    """A run with the same-N exit prior, history stats and both side tables ships the training
    rows' exit counts per N and the vocabulary rows' side codes as buffers, records the side
    table sizes in config.yaml, and reloads to the same validation metrics."""
    from training.side import USER_COLUMNS, VIDEO_COLUMNS, read_side_table, side_codes

    videos_csv = tmp_path / "videos.csv"
    vids = np.unique(table["video_id"].to_numpy())
    pl.DataFrame(
        {
            "video_id": vids,
            "video_type": ["NORMAL", "AD"] * (len(vids) // 2) + ["NORMAL"] * (len(vids) % 2),
            "upload_type": ["a"] * len(vids),
            "music_type": [str(v % 3) for v in vids],
            "tag": [f"{v % 4},{v % 5}" for v in vids],
            "author_id": [str(v % 2) for v in vids],
        }
    ).write_csv(videos_csv)
    users_csv = tmp_path / "users.csv"
    uids = np.unique(table["user_id"].to_numpy())
    pl.DataFrame(
        {"user_id": uids, **{c: [str(u % 3) for u in uids] for c in USER_COLUMNS}}
    ).write_csv(users_csv)
    run = tmp_path / "run"
    _train_tiny(
        table,
        run,
        "optim.max_epochs=1",
        "model.exit_prior_base=n_segments",
        "model.history_stats=true",
        f"features.video_table={videos_csv}",
        f"features.user_table={users_csv}",
    )
    cfg = load_run_config(run)
    model, model_cfg, users, videos = load_model(run)
    assert len(model_cfg.video_side_sizes) == len(VIDEO_COLUMNS)
    assert len(model_cfg.user_side_sizes) == len(USER_COLUMNS)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    train_rows = split == TRAIN
    _assert_exit_counts(model, table, train_rows, videos)
    s = model_cfg.s_max
    per_n = np.zeros((s + 1, s))
    exits = table["exit_slot"].to_numpy()[train_rows]
    n = table["n_segments"].to_numpy()[train_rows]
    np.add.at(per_n, (n[exits < s], exits[exits < s]), 1)
    np.testing.assert_array_equal(model.decoder.n_exit_counts.numpy(), per_n)
    want_v, sizes_v = side_codes(
        read_side_table(videos_csv, "video_id", VIDEO_COLUMNS), "video_id", videos
    )
    assert tuple(sizes_v) == model_cfg.video_side_sizes
    np.testing.assert_array_equal(model.embeddings["id"].video_side.codes.numpy(), want_v)
    want_u, _ = side_codes(read_side_table(users_csv, "user_id", USER_COLUMNS), "user_id", users)
    np.testing.assert_array_equal(model.embeddings["id"].user_side.codes.numpy(), want_u)
    history = history_index(table, cfg.data.history_len)
    valid = InteractionDataset(
        table, history, np.flatnonzero(split == VALID), users, videos, model_cfg.s_max
    )
    best = max(m["valid"]["strict"]["NDCG@5"] for m in _metrics(run))
    again = evaluate_dataset(model, valid, 64, "cpu", seed=cfg.optim.seed)
    assert again["strict"]["NDCG@5"] == pytest.approx(best, abs=1e-9)
