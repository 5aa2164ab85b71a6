"""model.loss against hand computations on a tiny example (S = 4, three rows)."""

from __future__ import annotations

import math

import pytest
import torch

from model.loss import LOSSES, bce, bpr_max, exit_ce, pairwise

# Row A: skipped in slot 1 of a 2-segment video (slot 2 = completion, slot 3 impossible).
# Row B: the same kind of video watched to the end: exit slot = N = 2.
# Row C: a 4-segment video watched to the end: V = S = 4 has no slot -> excluded everywhere.
LOGITS = [[1.0, 0.0, 2.0, -1.0], [0.5, -0.5, 0.0, 3.0], [9.0, 9.0, 9.0, 9.0]]
EXIT = [1, 2, 4]
N = [2, 2, 4]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def inputs(logits=LOGITS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(logits, requires_grad=True), torch.tensor(EXIT), torch.tensor(N)


def test_bpr_max_hand_computation():
    """Exit slot vs all 3 other slots (padding too), softmax weights over those slots' logits."""
    # A: z_V = 0, others z = 1, 2, -1
    wa = [math.exp(1), math.exp(2), math.exp(-1)]
    pa = (wa[0] * sig(1) + wa[1] * sig(2) + wa[2] * sig(-1)) / sum(wa)
    # B: z_V = 0, others z = 0.5, -0.5, 3
    wb = [math.exp(0.5), math.exp(-0.5), math.exp(3)]
    pb = (wb[0] * sig(0.5) + wb[1] * sig(-0.5) + wb[2] * sig(3)) / sum(wb)
    expected = (-math.log(pa) - math.log(pb)) / 2
    assert bpr_max(*inputs()).item() == pytest.approx(expected, rel=1e-6)


def test_pairwise_hand_computation():
    """Paper eq. 8 over the other real outcomes 0..N, mean over the pairs of a row."""
    row_a = (-math.log(sig(1 - 0)) - math.log(sig(2 - 0))) / 2  # pairs j = 0, 2
    row_b = (-math.log(sig(0.5 - 0)) - math.log(sig(-0.5 - 0))) / 2  # pairs j = 0, 1
    assert pairwise(*inputs()).item() == pytest.approx((row_a + row_b) / 2, rel=1e-6)


def test_bce_hand_computation():
    """Watched segments 1, exit segment 0, later segments ignored; a complete view is all 1."""
    row_a = (-math.log(sig(1.0)) - math.log(1 - sig(0.0))) / 2  # slot 0 -> 1, slot 1 -> 0
    row_b = (-math.log(sig(0.5)) - math.log(sig(-0.5))) / 2  # slots 0, 1 -> 1 (no exit segment)
    assert bce(*inputs()).item() == pytest.approx((row_a + row_b) / 2, rel=1e-6)


def test_exit_ce_hand_computation():
    """-log softmax(-z)_V over the outcomes 0..N."""
    row_a = -math.log(math.exp(0.0) / (math.exp(-1.0) + math.exp(0.0) + math.exp(-2.0)))
    row_b = -math.log(math.exp(0.0) / (math.exp(-0.5) + math.exp(0.5) + math.exp(0.0)))
    assert exit_ce(*inputs()).item() == pytest.approx((row_a + row_b) / 2, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_excluded_rows_have_no_effect(name):
    """The V == S row changes neither the value nor gets a gradient; an all-excluded batch is 0."""
    loss = LOSSES[name]
    other = [row[:] for row in LOGITS]
    other[2] = [-50.0, 3.0, float("nan"), 7.0]
    logits, v, n = inputs()
    value = loss(logits, v, n)
    value.backward()
    assert loss(*inputs(other)).item() == pytest.approx(value.item(), rel=1e-6)
    assert torch.count_nonzero(logits.grad[2]) == 0
    empty = loss(*(t[2:] for t in inputs()))
    empty.backward()
    assert empty.item() == 0.0


@pytest.mark.parametrize("name", ["pairwise", "bce", "exit_ce"])
def test_impossible_slots_are_ignored(name):
    """Slots j > N never enter pairwise / bce / exit_ce..."""
    changed = [row[:] for row in LOGITS]
    changed[0][3] = 1e4
    assert LOSSES[name](*inputs(changed)).item() == pytest.approx(LOSSES[name](*inputs()).item())


def test_bpr_max_sees_padding_slots():
    """...but bpr_max compares with them (reference); a constant +1e4 there zeroes its signal."""
    changed = [row[:] for row in LOGITS]
    changed[0][3] = 1e4
    changed[1][3] = 1e4
    assert bpr_max(*inputs(changed)).item() != pytest.approx(bpr_max(*inputs()).item())
    assert bpr_max(*inputs(changed)).item() < 1e-6


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_raising_the_exit_slot_logit_raises_the_loss(name):
    """Every loss pushes the exit slot's interest down: d loss / d z_V > 0 on kept rows."""
    logits, v, n = inputs()
    LOSSES[name](logits, v, n).backward()
    assert logits.grad[0, 1] > 0  # row A, V = 1
    if name != "bce":  # bce never trains the completion slot N
        assert logits.grad[1, 2] > 0  # row B, V = N = 2


def test_bad_shapes_are_a_clear_error():
    """Mismatched shapes raise ValueError naming them."""
    with pytest.raises(ValueError, match="exit_slot"):
        exit_ce(
            torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), torch.ones(3, dtype=torch.long)
        )
