"""exit_prior_adaptive: the pseudo-view count a(n_v) = exit_prior * exp(alpha + beta log1p(n_v))
is learned; it starts as the fixed exit_prior and is part of the exported computation."""

from __future__ import annotations

import math

import pytest
import torch

from tests.model.model_testing import B, S, make_batch, tiny_config
from tests.model.test_model_network import build, counts_of


def _model(adaptive: bool, a: float = 4.0):
    model = build(exit_prior=a, exit_prior_adaptive=adaptive, dropout=0.0).eval()
    g = torch.Generator().manual_seed(3)
    videos = torch.randint(1, 9, (80,), generator=g)
    exits = torch.randint(0, S, (80,), generator=g)
    model.decoder.set_exit_counts(counts_of(videos, exits))
    return model


def test_adaptive_prior_starts_as_the_fixed_one_and_learns_a_of_the_count():
    fixed, adaptive = _model(False), _model(True)
    batch = make_batch(fixed.cfg, seed=2)
    assert "decoder.prior_adapt" in dict(adaptive.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(adaptive(**batch), fixed(**batch))
        ids = torch.arange(9)
        c = adaptive.decoder.exit_counts[ids]
        g = adaptive.decoder.global_exit
        adaptive.decoder.prior_adapt.copy_(torch.tensor([math.log(2.0), 0.5]))
        a = 4.0 * 2.0 * torch.exp(0.5 * torch.log1p(c.sum(-1, keepdim=True)))
        want = ((c + a * g) / (c.sum(-1, keepdim=True) + a)).log()
        torch.testing.assert_close(adaptive.decoder.exit_prior(ids, None), want)
        assert not torch.allclose(adaptive(**batch), fixed(**batch))
    # It trains: the loss has a gradient on (alpha, beta).
    adaptive.train()
    logits = adaptive(**batch)
    (-logits[torch.arange(B), batch["n_segments"] // 2]).sum().backward()
    grad = adaptive.decoder.prior_adapt.grad
    assert grad is not None and bool((grad != 0).all())


def test_adaptive_prior_needs_a_prior():
    with pytest.raises(ValueError, match="exit_prior_adaptive needs exit_prior"):
        tiny_config(exit_prior_adaptive=True)


def test_prior_mlp_starts_at_zero_and_learns():
    """prior_mlp: a per-slot correction of the logits from the prior's parts, the slot and the
    user residual; zero at the start (the model is the one without it), trained by the loss,
    and equal under ragged scoring (the slots taken after the parts)."""
    plain = build(exit_prior=4.0, exit_prior_base="n_segments", user_tilt=0.5, dropout=0.0)
    model = build(
        exit_prior=4.0, exit_prior_base="n_segments", user_tilt=0.5, dropout=0.0, prior_mlp=6
    )
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("decoder.prior_mlp") for k in missing)
    g = torch.Generator().manual_seed(5)
    videos = torch.randint(1, 9, (80,), generator=g)
    n_seg = videos % S + 1
    exits = torch.minimum(torch.randint(0, S, (80,), generator=g), n_seg)
    from segint.baselines import exit_counts

    n_table = torch.as_tensor(exit_counts(n_seg.numpy(), exits.numpy(), S + 1, S)).float()
    for m in (plain, model):
        m.decoder.set_exit_counts(counts_of(videos, exits), n_table)
        m.eval()
    batch = make_batch(model.cfg, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), plain(**batch))
    model.train()
    logits = model(**batch)
    (-logits[torch.arange(B), batch["n_segments"] // 2]).sum().backward()
    last = model.decoder.prior_mlp[-1].weight.grad
    assert last is not None and bool((last != 0).any())
    with torch.no_grad():
        for p in model.decoder.prior_mlp.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        model.eval()
        full = model(**batch)
        assert not torch.allclose(full, plain(**batch))
        # Ragged: every N < T, only the first T slots computed; equal to the full run's.
        t = S - 2
        short = {**batch, "n_segments": batch["n_segments"].clamp(max=t - 1)}
        full = model(**short)
        states, mask = model.encode_user(
            **{k: short[k] for k in ("user_ids", "hist_video_ids", "hist_exit_slots",
                                     "hist_n_segments", "hist_mask")}
        )  # fmt: skip
        ragged = model.score(states, mask, short["video_ids"], short["n_segments"],
                             slot_index=torch.arange(t))  # fmt: skip
        torch.testing.assert_close(ragged, full[:, :t])
    with pytest.raises(ValueError, match="prior_mlp needs exit_prior"):
        tiny_config(prior_mlp=4)
