"""Fixtures for SegRec tests: the filtered KuaiRand fixture and a tiny interest-model run.

The interest model is a randomly initialised `SegmentInterestModel` written as a real run
directory (`training.checkpoint`), with the vocabularies of the split's training rows: SegRec
only needs *some* frozen logits, and building it takes milliseconds instead of a training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from segint import provenance
from segint.data import Filters, load_table
from segint.splits import TRAIN, assign_split
from tests.paths import KUAIRAND_FIXTURE


def make_interest_run(
    out: Path,
    table: pl.DataFrame,
    seed: int,
    split: str = "random_per_user",
    extra: tuple[str, ...] = (),
    log: Path | None = KUAIRAND_FIXTURE,
) -> Path:
    """A run directory of a tiny random interest model trained (nominally) on ``seed``'s split.

    ``extra`` config overrides (e.g. ``model.exit_prior=1.0``) also apply to the fold models
    that cross-fitting trains from this run's config. For a split, the run's provenance
    names ``log`` (read as KuaiRand with the default filters: ``table`` must be that log).
    """
    from model.network import SegmentInterestModel
    from training.checkpoint import save_weights, write_run_files
    from training.config import load_config
    from training.data import build_vocabs

    overrides = [f"data.seed={seed}", "model.d_model=12", "model.n_heads=3", "model.ffn_dim=16"]
    overrides += ["model.n_layers=1", "model.dropout=0.0", "data.history_len=5"]
    overrides += ["optim.max_epochs=1", *extra]
    if split != "random_per_user":
        overrides.append(f"data.split={split}")
    cfg = load_config(None, overrides)
    rows = np.ones(table.height, bool)
    if split == "random_per_user":
        rows = assign_split(table, split, seed) == TRAIN
    users, videos = build_vocabs(table, np.flatnonzero(rows))
    model_cfg = cfg.model_config(len(users), len(videos))
    torch.manual_seed(seed)
    model = SegmentInterestModel(model_cfg)
    write_run_files(out, cfg, model_cfg, users, videos)
    save_weights(model, out)
    if split != "train_file" and log is not None:
        files = [provenance.file_record("data", log, "kuairand", table.height)]
        split_def = provenance.split_record(split, seed, 1)
        provenance.write(out, provenance.record(files, "kuairand", Filters(), split_def))
    return out


@pytest.fixture(scope="session")
def fixture_log() -> Path:
    if not KUAIRAND_FIXTURE.exists():
        raise FileNotFoundError(f"test fixture missing: {KUAIRAND_FIXTURE}")
    return KUAIRAND_FIXTURE


@pytest.fixture(scope="session")
def fixture_table(fixture_log: Path) -> pl.DataFrame:
    """The fixture as `segrec train --format kuairand` reads it (default filters)."""
    return load_table(fixture_log, "kuairand")


@pytest.fixture(scope="session")
def interest_run(tmp_path_factory: pytest.TempPathFactory, fixture_table: pl.DataFrame) -> Path:
    """Interest-model run dir for split random_per_user, seed 0 of the fixture."""
    return make_interest_run(tmp_path_factory.mktemp("interest"), fixture_table, seed=0)
