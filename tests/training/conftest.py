"""Fixtures for the training tests: a generated canonical log and the tiny config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from segint.data import load_table
from tests.paths import ROOT

TINY = ROOT / "configs" / "tiny.yaml"
BASE = ROOT / "configs" / "base.yaml"


def make_log(n_users: int = 30, n_videos: int = 20, seed: int = 0, t0: int = 0) -> pl.DataFrame:
    """A canonical log whose exits depend on the video: each video has a typical exit point.

    Users watch 4..12 videos at increasing times; play time is the video's typical fraction
    of its duration plus noise, so per-video exit profiles are learnable.
    """
    rng = np.random.default_rng(seed)
    duration = rng.integers(6_000, 150_000, n_videos)
    typical = rng.uniform(0.05, 1.1, n_videos)  # > 1: usually watched to the end
    rows = []
    for u in range(n_users):
        n = int(rng.integers(4, 13))
        times = t0 + np.sort(rng.choice(10_000_000, n, replace=False)) * 1000
        for v, t in zip(rng.integers(0, n_videos, n), times, strict=True):
            play = int(max(1, duration[v] * (typical[v] + rng.normal(0, 0.05))))
            rows.append((u, int(v) + 100, int(t), int(duration[v]), play))
    return pl.DataFrame(
        rows, schema=["user_id", "video_id", "time_ms", "duration_ms", "play_time_ms"], orient="row"
    )


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    make_log().write_csv(path)
    return path


@pytest.fixture
def table(log_csv: Path) -> pl.DataFrame:
    return load_table(log_csv, "canonical")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded (no OpenMP hand-offs on a shared 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
