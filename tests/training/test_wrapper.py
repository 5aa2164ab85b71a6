"""SegmentInterestTrain: the training-only behaviours live in the wrapper, not in the model."""

from __future__ import annotations

import torch

from model import SegmentInterestModel
from tests.model.model_testing import B, make_batch, tiny_config
from tests.model.test_model_network import counts_of
from training.data import Batch
from training.wrapper import SegmentInterestTrain


def build(seed: int = 0, **overrides) -> SegmentInterestModel:
    torch.manual_seed(seed)
    return SegmentInterestModel(tiny_config(**overrides))


def test_id_dropout_only_in_the_wrapper_in_training():
    """id_dropout replaces ids by the unknown row in the wrapper's training mode only; the
    model's own forward never drops ids, in either mode."""
    model = build(id_dropout=0.5, dropout=0.0)
    batch = make_batch(model.cfg, seed=1)
    exits = torch.zeros(B, dtype=torch.long)
    net = SegmentInterestTrain(model)
    with torch.no_grad():
        plain = model.eval()(**batch)
        assert torch.equal(model.train()(**batch), plain)  # dropout 0: train mode is the same
        assert torch.equal(net.eval()(Batch(**batch, exit_slot=exits)), plain)
        torch.manual_seed(0)
        assert not torch.equal(net.train()(Batch(**batch, exit_slot=exits)), plain)


def test_wrapper_is_the_model_without_counts_to_leave_out():
    """Without an exit prior or tilt the wrapper's logits are the model's, bit for bit."""
    model = build(dropout=0.0).eval()
    batch = make_batch(model.cfg, seed=3)
    with torch.no_grad():
        got = SegmentInterestTrain(model).eval()(Batch(**batch, exit_slot=batch["n_segments"] // 2))
        assert torch.equal(got, model(**batch))


def test_leave_one_out_changes_only_counted_videos():
    """The wrapper scores a row with its own exit left out of its video's counts: rows of
    counted videos change, rows of the unknown video (no counts) do not."""
    model = build(exit_prior=1.0, dropout=0.0).eval()
    batch = make_batch(model.cfg, seed=2)
    exits = torch.zeros(B, dtype=torch.long)
    with torch.no_grad():
        model.decoder.set_exit_counts(counts_of(batch["video_ids"], exits))
        full = model(**batch)
        left_out = SegmentInterestTrain(model).eval()(Batch(**batch, exit_slot=exits))
    known = batch["video_ids"] > 0
    assert known.any() and (~known).any()
    assert torch.equal(left_out[~known], full[~known])
    assert not torch.equal(left_out[known], full[known])
