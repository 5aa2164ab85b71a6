"""count_flops agrees with PyTorch's own FLOP counter on the code that actually runs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import SegmentInterestModel, count_flops
from tests.model.model_testing import H, make_batch, tiny_config, user_part, video_part

CONFIGS = [
    {},
    {"modalities": ("id", "content")},
    {"n_layers": 3, "reference_last_layer_bug": True},
    {"n_layers": 0},
    {"history_tokens": False},
]


def measured_macs(fn) -> int:
    # FlopCounterMode counts 2 FLOPs per multiply-add.
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("overrides", CONFIGS)
def test_self_stream_split(overrides):
    """Self: encode_user once + score(C) costs user_per_request + C x per_candidate."""
    torch.manual_seed(0)
    model = SegmentInterestModel(tiny_config(user_stream="self", **overrides)).eval()
    user = user_part(make_batch(model.cfg, b=1, h=H))
    with torch.no_grad():
        states, user_mask = model.encode_user(**user)
    user_macs = measured_macs(lambda: model.encode_user(**user))
    score = {}
    for c in (1, 4):
        videos = video_part(make_batch(model.cfg, b=c, seed=c))
        score[c] = measured_macs(lambda v=videos: model.score(states, user_mask, **v))
    flops = count_flops(model.cfg, n_candidates=4)
    assert score[4] - score[1] == 3 * flops.per_candidate
    assert user_macs + score[4] == flops.total


@pytest.mark.parametrize("overrides", CONFIGS)
def test_cross_stream_is_all_per_candidate(overrides):
    """Cross: forward on C rows of the same user costs C x per_candidate, no shared part."""
    torch.manual_seed(0)
    model = SegmentInterestModel(tiny_config(user_stream="cross", **overrides)).eval()
    batch = make_batch(model.cfg, b=5, h=H)
    flops = count_flops(model.cfg, n_candidates=5)
    assert flops.user_per_request == 0
    assert measured_macs(lambda: model(**batch)) == flops.total


def test_self_stream_is_cheaper_per_candidate():
    """The point of the self stream: per-candidate cost excludes the user side."""
    cfg = tiny_config()
    cross = count_flops(tiny_config(user_stream="cross"), 100)
    own = count_flops(cfg, 100)
    assert own.per_candidate < cross.per_candidate and own.total < cross.total
    with pytest.raises(ValueError, match="n_candidates"):
        count_flops(cfg, 0)
