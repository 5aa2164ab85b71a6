"""A tiny real log (2,000 raw KuaiRand-Pure rows) split the way `segint baselines` splits it."""

from __future__ import annotations

import polars as pl
import pytest

from learned.base import LearnedInput
from segint.data import load_table
from segint.splits import TEST, VALID, assign_split
from tests.paths import KUAIRAND_FIXTURE
from training.side import USER_COLUMNS, USER_TABLE, VIDEO_COLUMNS, VIDEO_TABLE, read_side_table


@pytest.fixture(scope="session")
def tiny_input(shared_data) -> LearnedInput:
    """The fixture log, random_per_user split seed 0, with the bundled side tables."""
    df = load_table(KUAIRAND_FIXTURE, "kuairand")
    split = assign_split(df, "random_per_user", seed=0)
    keep = (split >= 0) & (split <= VALID)
    return LearnedInput(
        fit=df.filter(pl.Series(keep)),
        valid=split[keep] == VALID,
        test=df.filter(pl.Series(split == TEST)),
        s_max=40,
        seed=0,
        video_table=read_side_table(VIDEO_TABLE, "video_id", VIDEO_COLUMNS),
        user_table=read_side_table(USER_TABLE, "user_id", USER_COLUMNS),
    )
