"""`sasrec`: the softmax head against a hand computation, masking, and fits on tiny logs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learned.neural import NeuralConfig
from learned.sasrec import ExitSoftmaxHead, SASRec, fit_predict
from tests.learned.neural_testing import assert_learns_planted_rule
from training.data import Example, collate

FAST = NeuralConfig(emb_dim=8, max_epochs=6, patience=24, batch_size=32, id_dropout=0.0)


def test_loss_is_the_cross_entropy_over_real_outcomes():
    """softmax(-y) over slots 0..N only; a row whose exit is S has no slot and is skipped."""
    y = torch.tensor([[0.2, -1.0, 0.5, 7.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([-0.2, 1.0, -0.5], dtype=torch.float64)
    expected = -(z[1] - torch.logsumexp(z, 0))
    loss = ExitSoftmaxHead().loss(y, torch.tensor([1, 4]), torch.tensor([2, 4]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def example(hist: list[int], video: int = 3) -> Example:
    h = np.array(hist, dtype=np.int64)
    return Example(1, video, 3, 0, h, np.zeros_like(h), np.full_like(h, 2))


def test_padding_and_history_order_reach_the_output_only_where_real():
    """Padded history entries do not change a row's logits; real history entries do."""
    torch.manual_seed(0)
    net = SASRec(n_videos=10, s_max=5, history_len=4, d=8).eval()
    short = collate([example([4]), example([5, 6, 7])])  # row 0 is padded to H = 3
    other = collate([example([4]), example([5, 6, 8])])
    a, b = net(short), net(other)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    alone = net(collate([example([4])]))
    torch.testing.assert_close(alone[0], a[0], rtol=1e-5, atol=1e-6)


def test_learns_a_planted_length_rule_and_is_seeded():
    """On a log where N decides the exit slot, the fitted distribution finds the rule; the
    same seed gives the same scores."""
    assert_learns_planted_rule(fit_predict, FAST, seed=1)
