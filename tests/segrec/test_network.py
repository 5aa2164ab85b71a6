"""SegRec networks: shapes, integration weights, padding invariance, DIN's packed attention."""

from __future__ import annotations

import copy

import pytest
import torch

from segrec.config import MODES, SegRecConfig
from segrec.network import DIN, Dice, SegRecModel, interest_features, interest_weights, real_slots

B, S, H, D = 13, 7, 5, 6  # deliberately mismatched sizes


def batch(seed: int = 0, content_dim: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n_seg = torch.randint(1, S + 1, (B,), generator=g)
    n_seg[0], n_seg[1] = 1, S  # the extremes
    hist_n = torch.randint(1, S + 1, (B, H), generator=g)
    hist_mask = torch.rand(B, H, generator=g) < 0.6
    hist_mask[2] = False  # a user without history
    out = {
        "user_ids": torch.randint(0, 11, (B,), generator=g),
        "video_ids": torch.randint(0, 17, (B,), generator=g),
        "n_segments": n_seg,
        "hist_video_ids": torch.randint(0, 17, (B, H), generator=g),
        "hist_exit_slots": torch.minimum(torch.randint(0, S + 1, (B, H), generator=g), hist_n),
        "hist_n_segments": hist_n,
        "hist_mask": hist_mask,
        # the interest model's impossible slots j > N carry +1e4: must not leak into weights
        "interest_logits": torch.where(
            torch.arange(S)[None, :] > n_seg[:, None], 1e4, torch.randn(B, S, generator=g)
        ),
    }
    if content_dim:
        out["video_content"] = torch.randn(B, S, content_dim, generator=g)
    return out


def model(backbone: str, mode: str, seed: int = 0, **kw: object) -> SegRecModel:
    torch.manual_seed(seed)
    cfg = SegRecConfig(
        backbone, mode, n_users=11, n_videos=17, s_max=S, history_len=H, emb_dim=D, **kw
    )  # type: ignore[arg-type]
    m = SegRecModel(cfg)
    for p in m.parameters():  # move off the tiny init so that every term matters
        torch.nn.init.normal_(p, std=0.5)
    return m.eval()


@pytest.mark.parametrize("backbone", ["widedeep", "din"])
@pytest.mark.parametrize("mode", MODES)
def test_shapes(backbone: str, mode: str) -> None:
    """Slot logits (B, S), or (B, 1) in the video-level modes; one finite logit per row."""
    m, x = model(backbone, mode), batch()
    dense = interest_features(x["interest_logits"], x["n_segments"]) if mode == "features" else None
    y = m.slot_logits(**{k: v for k, v in x.items() if k != "interest_logits"}, dense=dense)
    assert y.shape == (B, 1 if mode in ("video", "features") else S)
    out = m(**x)
    assert out.shape == (B,) and torch.isfinite(out).all()


def test_interest_weights_sum_to_one_over_real_slots() -> None:
    """softmax(p) restricted to j < N: sums to 1, exactly 0 on padding, even with +1e4 there."""
    x = batch()
    w = interest_weights(x["interest_logits"], x["n_segments"])
    real = real_slots(x["n_segments"], S)
    assert torch.allclose(w.sum(-1), torch.ones(B), atol=1e-6)
    assert (w[~real] == 0).all() and (w[real] > 0).all()
    row = 3  # one row by hand
    n = int(x["n_segments"][row])
    p = x["interest_logits"][row, :n]
    assert torch.allclose(w[row, :n], torch.exp(p) / torch.exp(p).sum(), atol=1e-6)


@pytest.mark.parametrize("backbone", ["widedeep", "din"])
def test_integration_by_mode(backbone: str) -> None:
    """segrec = sum softmax(p) y, segsum = sum y, segmean = mean y, over the real slots only."""
    x = batch()
    real = real_slots(x["n_segments"], S).float()
    weights = {
        "segrec": interest_weights(x["interest_logits"], x["n_segments"]),
        "segsum": real,
        "segmean": real / x["n_segments"][:, None],
    }
    for mode, w in weights.items():
        m = model(backbone, mode)
        y = m.slot_logits(**{k: v for k, v in x.items() if k != "interest_logits"})
        assert torch.allclose(m(**x), (w * y).sum(-1), atol=1e-5)
        # interest logits of padding slots change nothing
        x2 = dict(x, interest_logits=torch.where(real.bool(), x["interest_logits"], -3.0))
        assert torch.allclose(m(**x), m(**x2), atol=1e-6)


def test_segadjust_starts_as_segsum() -> None:
    """One shared weight per slot, initialised to 1: same output as SegSum before training."""
    x = batch()
    torch.manual_seed(1)
    adjust = SegRecModel(SegRecConfig("widedeep", "segadjust", 11, 17, s_max=S, emb_dim=D))
    torch.manual_seed(1)
    segsum = SegRecModel(SegRecConfig("widedeep", "segsum", 11, 17, s_max=S, emb_dim=D))
    assert adjust.slot_weight is not None and adjust.slot_weight.shape == (S,)
    assert torch.allclose(adjust(**x), segsum(**x))
    with torch.no_grad():
        adjust.slot_weight[0] = 5.0
    assert not torch.allclose(adjust(**x), segsum(**x))


def test_din_packed_attention_matches_dense() -> None:
    """The packed attention equals the dense B x S x H computation on real slots."""
    m = model("din", "segsum", activation="prelu")
    din = m.backbone
    assert isinstance(din, DIN)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(B, S, D, generator=g), torch.randn(B, H, D, generator=g)
    x = batch()
    pairs = real_slots(x["n_segments"], S)[:, :, None] & x["hist_mask"][:, None, :]
    qe, ke = q[:, :, None].expand(B, S, H, D), k[:, None].expand(B, S, H, D)
    a = din.attention(torch.cat([qe, ke, qe - ke, qe * ke], -1)).squeeze(-1) * pairs
    dense = torch.einsum("bsh,bhd->bsd", a, k)
    assert torch.allclose(din.attend(q, k, pairs), dense, atol=1e-5)


@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_din_ignores_padded_history(activation: str) -> None:
    """Extra padded history columns, whatever their ids, do not change DIN's output."""
    m, x = model("din", "segrec", activation=activation), batch()
    x2 = dict(x)
    for name, fill in (("hist_video_ids", 9), ("hist_exit_slots", 0), ("hist_n_segments", 2)):
        x2[name] = torch.cat([x[name], torch.full((B, 3), fill)], 1)
    x2["hist_mask"] = torch.cat([x["hist_mask"], torch.zeros(B, 3, dtype=torch.bool)], 1)
    assert torch.allclose(m(**x), m(**x2), atol=1e-6)
    # and the history does matter where there is some
    x3 = dict(x, hist_video_ids=(x["hist_video_ids"] + 1) % 17)
    assert not torch.allclose(m(**x), m(**x3))


def test_content_field() -> None:
    """With content_dim > 0 both backbones take (B, S, Dc) features, per slot or averaged."""
    for backbone in ("widedeep", "din"):
        for mode in ("video", "segrec"):
            m, x = model(backbone, mode, content_dim=4), batch(content_dim=4)
            out = m(**x)
            x2 = dict(x, video_content=x["video_content"] + 1.0)
            assert out.shape == (B,) and not torch.allclose(out, m(**x2))


def test_dice_handles_empty_and_single_batches() -> None:
    """Training-mode Dice stays finite with 0 or 1 rows (a batch without any history)."""
    dice = Dice(4).train()
    assert dice(torch.zeros(0, 4)).shape == (0, 4)
    assert torch.isfinite(dice(torch.randn(1, 4))).all()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="mode"):
        SegRecConfig("widedeep", "nope", 3, 3)
    with pytest.raises(ValueError, match="hidden"):
        SegRecConfig("din", "video", 3, 3, hidden=(0,))
    cfg = SegRecConfig("din", "segrec", 3, 4, hidden=(8, 4))
    assert SegRecConfig.from_dict(cfg.to_dict()) == cfg


def test_learned_temperature_starts_at_one_and_trains() -> None:
    """softmax(t p) with t = 1 at init equals plain SegRec; t receives a gradient."""
    x = batch()
    torch.manual_seed(2)
    plain = SegRecModel(SegRecConfig("widedeep", "segrec", 11, 17, s_max=S, emb_dim=D))
    torch.manual_seed(2)
    temp = SegRecModel(
        SegRecConfig("widedeep", "segrec", 11, 17, s_max=S, emb_dim=D, learn_temperature=True)
    )
    assert torch.allclose(plain(**x), temp(**x))
    temp(**x).sum().backward()
    assert temp.log_temperature is not None and temp.log_temperature.grad is not None
    assert temp.log_temperature.grad.abs() > 0
    assert temp.cfg.method == "segrec+temp"
    with pytest.raises(ValueError, match="learn_temperature"):
        SegRecConfig("widedeep", "segsum", 3, 3, learn_temperature=True)


@pytest.mark.parametrize("mode", ["video", "segrec", "survival", "features"])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_din_split_first_layer_gives_the_same_outputs(mode: str, activation: str) -> None:
    """The exported DIN's inference form (`DIN.split_first_layer`: the attention unit's first
    layer as (W1 + W3) q + (W2 - W3) k + W4 (q * k) + b) gives the model's logits within float
    rounding, with rows without history, one-segment and full-length videos."""
    m = model("din", mode, activation=activation, att_hidden=(7, 5))
    x = batch(seed=4)
    split = copy.deepcopy(m)
    split.backbone.split_first_layer()
    assert split.backbone.split_first is not None and m.backbone.split_first is None
    with torch.no_grad():
        want, got = m(**x), split(**x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.equal(want, torch.zeros_like(want))
