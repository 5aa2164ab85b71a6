"""Cross-fitted interest inputs: no SegRec training row's features saw its own exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.splits import TRAIN, VALID, assign_split
from segrec.interest import crossfit_logits, fold_ids, interest_logits
from tests.segrec.conftest import make_interest_run


def test_fold_ids_are_balanced_and_seeded() -> None:
    a, b = fold_ids(103, 5, seed=0), fold_ids(103, 5, seed=0)
    assert (a == b).all() and sorted(np.bincount(a)) == [20, 20, 21, 21, 21]
    assert not (a == fold_ids(103, 5, seed=1)).all()
    with pytest.raises(Exception, match="2 folds"):
        fold_ids(10, 1, seed=0)


@pytest.mark.slow
def test_fold_models_never_saw_their_rows(tmp_path: Path, fixture_table: pl.DataFrame) -> None:
    """Fold f's model trains on the other folds only: its vocabulary and its exit-count prior
    hold none of fold f's rows, and fold f's logits are that model's; a second call reuses the
    cached fold models."""
    from training.checkpoint import load_model

    table = fixture_table
    interest = make_interest_run(
        tmp_path / "interest", table, seed=0, extra=("model.exit_prior=1.0",)
    )
    split = assign_split(table, "random_per_user", 0)
    k, cache = 3, tmp_path / "folds"
    got = crossfit_logits(interest, table, split, k, cache)
    train_rows = np.flatnonzero(split == TRAIN)
    folds = fold_ids(len(train_rows), k, seed=0)
    assert got.shape == (len(train_rows), 40)
    exits = table["exit_slot"].to_numpy()
    for f in range(k):
        model, _, users, _ = load_model(cache / f"fold{f}", "cpu")
        others = train_rows[folds != f]
        # the exit-count prior counts exactly the other folds' exits (exit slot < S)
        counts = model.decoder.exit_counts.numpy()
        assert counts.sum() == np.sum(exits[others] < 40)
        # users seen only in fold f are unknown to its model
        seen = set(table["user_id"].to_numpy()[others].tolist())
        held = train_rows[folds == f]
        only_here = set(table["user_id"].to_numpy()[held].tolist()) - seen
        assert only_here and (users.lookup(np.array(sorted(only_here))) == 0).all()
        np.testing.assert_allclose(
            got[folds == f], interest_logits(cache / f"fold{f}", table, held)
        )
    stamp = [(cache / f"fold{f}" / "model.pt").stat().st_mtime_ns for f in range(k)]
    again = crossfit_logits(interest, table, split, k, cache)
    np.testing.assert_array_equal(again, got)
    assert (cache / "oof_logits.npy").is_file()
    (cache / "oof_logits.npy").unlink()  # recomputed from the cached fold models
    np.testing.assert_array_equal(crossfit_logits(interest, table, split, k, cache), got)
    assert stamp == [(cache / f"fold{f}" / "model.pt").stat().st_mtime_ns for f in range(k)]
    assert (split == VALID).any()  # fold models validated on the split's validation rows
