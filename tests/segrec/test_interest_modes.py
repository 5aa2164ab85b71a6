"""The interest-driven SegRec modes: survival weights and interest features, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segint.heads import completion_probability, exit_distribution, outcome_mask
from segrec.network import (
    N_INTEREST_FEATURES,
    exit_probs,
    interest_features,
    real_slots,
    survival_weights,
)
from tests.segrec.test_network import B, S, batch, model

# One row by hand: N = 3 of S = 5 slots, exit distribution q = (0.1, 0.2, 0.3 | 0.4 complete).
Q = [0.1, 0.2, 0.3, 0.4]


def hand_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax(-p) over slots 0..3 is Q; slot 4 (impossible) carries +1e4."""
    p = torch.tensor([[-math.log(q) for q in Q] + [1e4]])
    return p, torch.tensor([3])


def test_exit_probs_match_the_served_distribution() -> None:
    """Same rule as segint.heads (what /score reports): softmax(-p) over the N + 1 outcomes."""
    x = batch()
    got = exit_probs(x["interest_logits"], x["n_segments"]).double().numpy()
    n = x["n_segments"].numpy()
    want = exit_distribution(x["interest_logits"].numpy(), outcome_mask(n, S))
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got[:, :].sum(-1), 1.0, atol=1e-6)
    # rows with N = S have no completion slot
    np.testing.assert_allclose(
        interest_features(x["interest_logits"], x["n_segments"])[:, 2].numpy(),
        completion_probability(want, n),
        atol=1e-6,
    )


def test_survival_weights_by_hand() -> None:
    """w = (P(reach 0), P(reach 1), P(reach 2), P(complete)) / sum = (1, .9, .7, .4) / 3."""
    p, n = hand_logits()
    w = survival_weights(p, n)[0]
    want = torch.tensor([1.0, 0.9, 0.7, 0.4, 0.0]) / 3.0
    assert torch.allclose(w, want, atol=1e-6)


def test_survival_weights_on_random_rows() -> None:
    """Non-increasing over the real slots, sum to one, zero beyond slot N; N = S has no
    completion weight."""
    x = batch()
    w = survival_weights(x["interest_logits"], x["n_segments"])
    real = real_slots(x["n_segments"], S)
    assert torch.allclose(w.sum(-1), torch.ones(B), atol=1e-6)
    diffs = w[:, 1:] - w[:, :-1]
    assert (diffs[real[:, 1:]] <= 1e-7).all()
    beyond = torch.arange(S)[None, :] > x["n_segments"][:, None]
    assert (w[beyond] == 0).all()


def test_interest_features_by_hand() -> None:
    """Watched fraction (j + 0.5) / N per exit slot, 1 for completion."""
    p, n = hand_logits()
    f = interest_features(p, n)[0]
    frac = [0.5 / 3, 1.5 / 3, 2.5 / 3, 1.0]
    entropy = -sum(q * math.log(q) for q in Q) / math.log(4)
    want = [
        sum(q * r for q, r in zip(Q, frac, strict=True)),  # expected watched fraction
        2.5 / 3,  # median: the cdf 0.1, 0.3, 0.6 first reaches 0.5 in slot 2
        0.4,  # completion probability
        0.1,  # early exit (slot 0)
        entropy,
        0.9,  # P(fraction >= 0.25): slots 1, 2, completion
        0.9,  # P(fraction >= 0.5): slot 1 is exactly 0.5
        0.7,  # P(fraction >= 0.75)
    ]
    assert f.shape == (N_INTEREST_FEATURES,)
    assert torch.allclose(f, torch.tensor(want), atol=1e-6)


def test_interest_features_in_unit_range() -> None:
    x = batch()
    f = interest_features(x["interest_logits"], x["n_segments"])
    assert f.shape == (B, N_INTEREST_FEATURES)
    assert ((f >= -1e-6) & (f <= 1 + 1e-6)).all()


@pytest.mark.parametrize("backbone", ["widedeep", "din"])
def test_survival_mode_integrates_with_survival_weights(backbone: str) -> None:
    """logit = sum_j w_j y_j with the survival weights; slot N's logit scores completion."""
    x = batch()
    m = model(backbone, "survival")
    y = m.slot_logits(**{k: v for k, v in x.items() if k != "interest_logits"})
    w = survival_weights(x["interest_logits"], x["n_segments"])
    assert torch.allclose(m(**x), (w * y).sum(-1), atol=1e-5)
    # interest logits beyond slot N change nothing; slot N's (completion) does
    beyond = torch.arange(S)[None, :] > x["n_segments"][:, None]
    x2 = dict(x, interest_logits=torch.where(beyond, -3.0, x["interest_logits"]))
    assert torch.allclose(m(**x), m(**x2), atol=1e-6)


@pytest.mark.parametrize("backbone", ["widedeep", "din"])
def test_features_mode_reads_the_interest_logits(backbone: str) -> None:
    """Mode features: the interest logits enter (through the features) and nothing beyond N."""
    x = batch()
    m = model(backbone, "features")
    beyond = torch.arange(S)[None, :] > x["n_segments"][:, None]
    x2 = dict(x, interest_logits=torch.where(beyond, -3.0, x["interest_logits"]))
    assert torch.allclose(m(**x), m(**x2), atol=1e-6)
    x3 = dict(x, interest_logits=x["interest_logits"].flip(-1))
    assert not torch.allclose(m(**x), m(**x3))
    with pytest.raises(ValueError, match="interest_logits"):
        m(**{k: v for k, v in x.items() if k != "interest_logits"})


@pytest.mark.parametrize(
    ("t", "want"),
    [
        # T = 0.5 * (3 - 0.5) = 1.25 segments: slot 1 counts for 2 - 1.25 = 0.75, slot 2 and
        # completion fully: 0.2 * 0.75 + 0.3 + 0.4
        (0.5, 0.85),
        # above 1.0 (0-30 s videos, replays): only the completion mass is left
        (1.2, 0.4),
        # a threshold at the very start: every outcome but part of slot 0
        (0.1, 0.1 * (1 - 0.25) + 0.2 + 0.3 + 0.4),
    ],
)
def test_effective_probability_by_hand(t: float, want: float) -> None:
    """P(play > t * duration), duration taken as N - 0.5 = 2.5 segments, uniform within a slot."""
    p, n = hand_logits()
    thresholds = torch.full((5,), 9.0)
    thresholds[2] = t  # index N - 1
    f = interest_features(p, n, thresholds)[0]
    assert f.shape == (N_INTEREST_FEATURES + 1,)
    assert torch.allclose(f[:-1], interest_features(p, n)[0])  # the other columns unchanged
    assert f[-1].item() == pytest.approx(want, abs=1e-6)


def test_effective_thresholds_follow_the_label_buckets() -> None:
    """N segments = a (N - 0.5) * 5 s video: N = 1..6 in the 0-30 s bucket, N = 7 in 30-60 s."""
    from segrec.labels import EffectiveViewLabel, thresholds_by_n

    label = EffectiveViewLabel((0, 30, 60, 200), (1.05, 0.85, 0.3))
    t = thresholds_by_n(label, 40)
    assert t[:6] == (1.05,) * 6
    assert t[6:12] == (0.85,) * 6
    assert t[12:] == (0.3,) * 28


@pytest.mark.parametrize("backbone", ["widedeep", "din"])
def test_features_mode_with_the_effective_feature(backbone: str) -> None:
    """The extra dense column widens the backbone; the model runs and its output is finite."""
    from dataclasses import replace

    base = model(backbone, "features")
    cfg = replace(base.cfg, effective_thresholds=(0.5,) * S)
    from segrec.network import SegRecModel, n_dense

    assert n_dense(cfg) == N_INTEREST_FEATURES + 1
    out = SegRecModel(cfg)(**batch())
    assert out.shape == (B,) and torch.isfinite(out).all()


def test_din_dense_linear_adds_a_linear_term() -> None:
    """dense_linear: DIN's logit = MLP(without the features) + w . features."""
    from dataclasses import replace

    from segrec.network import SegRecModel

    base = model("din", "features")
    m = SegRecModel(replace(base.cfg, dense_linear=True)).eval()
    x = batch()
    f = interest_features(x["interest_logits"], x["n_segments"])
    with torch.no_grad():
        m.backbone.dense_linear.weight.zero_()
        y0 = m(**x)
        m.backbone.dense_linear.weight[0, 2] = 1.5  # completion probability column
        y1 = m(**x)
    assert torch.allclose(y1 - y0, 1.5 * f[:, 2], atol=1e-5)


def test_din_dense_both_uses_the_linear_term_and_the_mlp() -> None:
    """dense_both: the features reach the logit through the linear term AND the MLP."""
    from dataclasses import replace

    from segrec.network import SegRecModel

    base = model("din", "features")
    cfg = replace(base.cfg, dense_both=True)
    assert cfg.method == "features+both"
    m = SegRecModel(cfg).eval()
    for p in m.parameters():  # off the tiny init, so that the MLP path carries signal
        torch.nn.init.normal_(p, std=0.5)
    x = batch()
    x2 = dict(x, interest_logits=x["interest_logits"].flip(-1))
    with torch.no_grad():
        y, y2 = m(**x), m(**x2)
        assert not torch.allclose(y, y2)  # both paths on
        m.backbone.dense_linear.weight.zero_()
        y0 = m(**x)
        assert not torch.allclose(y0, m(**x2))  # the MLP alone still reads the features
        m.backbone.dense_linear.weight[0, 2] = 1.5  # completion probability column
        f = interest_features(x["interest_logits"], x["n_segments"])
        assert torch.allclose(m(**x) - y0, 1.5 * f[:, 2], atol=1e-5)  # plus a linear term
    only_linear = SegRecModel(replace(base.cfg, dense_linear=True))
    width = only_linear.backbone.out[0].in_features
    assert m.backbone.out[0].in_features == width + N_INTEREST_FEATURES
    with pytest.raises(ValueError, match="dense_both applies to backbone din"):
        replace(model("widedeep", "features").cfg, dense_both=True)


def test_standardised_dense_features() -> None:
    """dense_center / dense_scale: the backbone sees (f - centre) / scale; `dense_statistics`
    of the rows it is given are their mean and standard deviation, so on those rows the
    standardised features have mean 0 and standard deviation 1."""
    from dataclasses import replace

    from segrec.network import SegRecModel, dense_statistics

    x = batch()
    base = model("widedeep", "features")
    logits = x["interest_logits"].numpy()
    centre, scale = dense_statistics(base.cfg, logits, x["n_segments"].numpy())
    f = interest_features(x["interest_logits"], x["n_segments"]).double()
    assert np.allclose(centre, f.mean(0).numpy(), atol=1e-6)
    assert np.allclose(scale, f.std(0, unbiased=False).clamp(min=1e-3).numpy(), atol=1e-6)
    cfg = replace(base.cfg, dense_center=centre, dense_scale=scale)
    assert cfg.method == "features+std"
    m = SegRecModel(cfg).eval()
    z = m.dense_inputs(x["interest_logits"], x["n_segments"]).double()
    want = (f - torch.tensor(centre, dtype=torch.float64)) / torch.tensor(scale).double()
    assert torch.allclose(z, want, atol=1e-5)
    informative = torch.tensor(scale) > 1e-3  # a constant column keeps the floor
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(
        z.std(0, unbiased=False)[informative], torch.tensor(1.0).double(), atol=1e-3
    )
    # the unstandardised model with the same weights sees the raw features
    plain = SegRecModel(base.cfg).eval()
    plain.load_state_dict(m.state_dict())
    assert not torch.allclose(plain(**x), m(**x))
    with pytest.raises(ValueError, match="dense_scale must be finite and > 0"):
        replace(base.cfg, dense_center=(0.0,) * len(scale), dense_scale=(0.0,) * len(scale))
    with pytest.raises(ValueError, match="one value per feature"):
        replace(base.cfg, dense_center=centre, dense_scale=scale[:-1])
    with pytest.raises(ValueError, match="dense_center has 2 values"):
        SegRecModel(replace(base.cfg, dense_center=(0.0, 0.0), dense_scale=(1.0, 1.0)))
