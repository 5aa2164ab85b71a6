"""`din-slot`: hazard algebra against hand computations, and fits on tiny logs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learned.din_slot import HazardHead, fit_predict, hazard_log_probs
from learned.neural import NeuralConfig
from tests.learned.neural_testing import assert_learns_planted_rule

FAST = NeuralConfig(emb_dim=8, max_epochs=6, patience=24, batch_size=32, id_dropout=0.0)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_hazard_exit_distribution_matches_hand_computation():
    """h = (0.5, 0.25) on N = 2: P(exit) = (0.5, 0.5*0.25, 0.5*0.75), completion in slot 2."""
    z = torch.tensor([[logit(0.5), logit(0.25), 3.0, -2.0]], dtype=torch.float64)
    p = hazard_log_probs(z, torch.tensor([2])).exp()[0].numpy()
    np.testing.assert_allclose(p, [0.5, 0.125, 0.375, 0.0, 0.0], atol=1e-12)
    scores, dist = HazardHead().scores_and_dist(z.numpy(), np.array([2]))
    np.testing.assert_allclose(dist[0], [0.5, 0.125, 0.375, 0.0], atol=1e-12)
    np.testing.assert_allclose(scores[0], 1.0 - dist[0])


def test_full_length_video_renormalised_over_its_slots():
    """N = S: no completion slot; P = (0.5, 0.25) before, (2/3, 1/3) after renormalising."""
    z = torch.tensor([[logit(0.5), logit(0.5)]], dtype=torch.float64)
    p = hazard_log_probs(z, torch.tensor([2])).exp()[0].numpy()
    np.testing.assert_allclose(p, [0.5, 0.25, 0.25], atol=1e-12)
    _, dist = HazardHead().scores_and_dist(z.numpy(), np.array([2]))
    np.testing.assert_allclose(dist[0], [2 / 3, 1 / 3], atol=1e-12)


def test_loss_is_the_binary_cross_entropy_of_the_reached_slots():
    """Exit 1 of N = 3: -log h0' ... = BCE(z0, 0) + BCE(z1, 1); completion: all labels 0."""
    z = torch.tensor([[0.3, -0.7, 1.1, 9.0], [0.3, -0.7, 1.1, 9.0]], dtype=torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    t = torch.tensor
    left = bce(z[0, :2], t([0.0, 1.0], dtype=z.dtype), reduction="sum")
    done = bce(z[1, :3], t([0.0, 0.0, 0.0], dtype=z.dtype), reduction="sum")
    loss = HazardHead().loss(z, torch.tensor([1, 3]), torch.tensor([3, 3]))
    assert loss.item() == pytest.approx(((left + done) / 2).item(), rel=1e-12)


def test_learns_a_planted_length_rule_and_is_seeded():
    """On a log where N decides the exit slot, the fitted distribution finds the rule; the
    same seed gives the same scores; the settings name the validation rows."""
    _, out = assert_learns_planted_rule(fit_predict, FAST, seed=3)
    assert 0 < out.settings["best_epoch"] <= FAST.max_epochs
    assert out.settings["chosen_on"] == "validation rows (60)"
