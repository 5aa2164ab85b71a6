"""Leave-one-out in the real training step: a training row's own exit must not be in the
exit-count prior it is scored with, or the prior hands the model its label."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from model.loss import LOSSES
from segint.splits import assign_split
from tests.training.conftest import TINY
from training.config import load_config
from training.train import Dist, _build, make_optimizer, prepare, train_step


def test_train_step_scores_rows_with_their_own_exit_left_out(table: pl.DataFrame) -> None:
    """The loss `train_step` steps on is the loss of the logits with the batch's own exits
    excluded from the prior, not of the logits with them included.

    The tiny config has an exit-count prior (exit_prior 1 pseudo-view), no dropout and no id
    dropout, so both losses are deterministic; the first assertion checks that they differ on
    this batch, so the test can tell them apart. ``net`` is the training view
    (`SegmentInterestTrain`) that `_build` hands the loop; ``model`` its exported module.
    """
    cfg = load_config(TINY, ["model.exit_prior=1.0", "model.id_dropout=0.0"])
    prep = prepare(cfg, table, assign_split(table, cfg.data.split, cfg.data.seed))
    model, net, loader = _build(cfg, prep, Dist(), torch.device("cpu"))
    batch = next(iter(loader))
    loss_fn = LOSSES[cfg.loss]
    with torch.no_grad():
        left_out = loss_fn(
            net(batch),
            batch.exit_slot,
            batch.n_segments,
        ).item()
        included = loss_fn(model(**batch.inputs()), batch.exit_slot, batch.n_segments).item()
    assert abs(left_out - included) > 1e-3 * abs(included)
    stepped = train_step(net, make_optimizer(model, cfg), loss_fn, batch, cfg.optim.grad_clip)
    assert stepped.item() == pytest.approx(left_out, rel=1e-5)
    assert not np.isclose(stepped.item(), included, rtol=1e-4)
