"""`learned.neural`: one table with histories, training-row vocabularies, no test labels fitted."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from learned import din_slot, sasrec
from learned.neural import NeuralConfig, prepare
from segint.vocab import UNKNOWN
from tests.learned.neural_testing import planted_log, split_input

FAST = NeuralConfig(emb_dim=8, max_epochs=2, batch_size=64)


def test_prepare_keeps_test_order_and_builds_vocabularies_from_training_rows():
    """Test rows come back in ``inp.test``'s order; ids seen only in validation or test rows
    are unknown; each history entry is an earlier view of the same user."""
    inp = split_input(planted_log(n_users=12, views=5))
    shuffled = inp.test.sample(fraction=1.0, shuffle=True, seed=4)
    inp = dataclasses.replace(inp, test=shuffled)
    prep = prepare(inp, history_len=4)
    got = prep.table[prep.test_rows].select("user_id", "video_id", "time_ms")
    assert got.equals(shuffled.select("user_id", "video_id", "time_ms"))
    train_videos = set(inp.fit.filter(pl.Series(~inp.valid))["video_id"].to_list())
    for v in set(prep.table["video_id"].to_list()):
        assert (prep.videos.lookup(np.array([v]))[0] == UNKNOWN) == (v not in train_videos)
    users, times = prep.table["user_id"].to_numpy(), prep.table["time_ms"].to_numpy()
    r, k = np.nonzero(prep.history >= 0)
    h = prep.history[r, k]
    assert (users[h] == users[r]).all() and (times[h] < times[r]).all()


@pytest.mark.parametrize("learner", [din_slot, sasrec], ids=["din-slot", "sasrec"])
def test_test_labels_never_reach_the_fit(learner):
    """Changing the outcomes of test rows that are nobody's history (each user's last view)
    changes neither the chosen epoch nor any prediction: test rows are scored, never fitted
    or validated on."""
    inp = split_input(planted_log(n_users=30, views=6), seed=2)
    flipped = inp.test.with_columns(exit_slot=pl.lit(0, pl.Int64))
    a = learner.fit_predict(inp, FAST)
    b = learner.fit_predict(dataclasses.replace(inp, test=flipped), FAST)
    assert a.settings["valid_NDCG@5_strict_by_epoch"] == b.settings["valid_NDCG@5_strict_by_epoch"]
    np.testing.assert_array_equal(a.exit_dist, b.exit_dist)
