"""Weight averaging (``optim.ema``): the average by hand, the swap, and what a run saves."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from segint.errors import SegintError
from segint.splits import assign_split
from tests.training.conftest import TINY
from training import train as train_module
from training.config import load_config
from training.ema import WeightAverage
from training.train import train


def test_average_by_hand() -> None:
    """avg <- avg + (1 - d_t)(p - avg), d_t = min(decay, (1 + t) / (10 + t)) for step t."""
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = WeightAverage(lin, decay=0.5)
    expected = 1.0
    for t, value in enumerate([3.0, -2.0, 5.0], start=1):
        with torch.no_grad():
            lin.weight.fill_(value)
        d = min(0.5, (1 + t) / (10 + t))
        assert ema.current_decay() == pytest.approx(d)
        ema.update()
        expected += (1 - d) * (value - expected)
        assert ema.average[0].item() == pytest.approx(expected)
    for _ in range(5):
        ema.update()
    assert ema.current_decay() == 0.5  # step 9: (1 + 9) / 19 > 0.5, the warm-up is over


def test_swapped_puts_the_average_in_and_the_live_weights_back() -> None:
    lin = torch.nn.Linear(2, 1)
    ema = WeightAverage(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update()
    live = [p.detach().clone() for p in lin.parameters()]
    with ema.swapped():
        for p, a in zip(lin.parameters(), ema.average, strict=True):
            torch.testing.assert_close(p.detach(), a)
        assert not torch.equal(lin.weight, live[0])
    for p, v in zip(lin.parameters(), live, strict=True):
        torch.testing.assert_close(p.detach(), v, rtol=0, atol=0)


@pytest.mark.parametrize("refit", [False, True])
def test_a_run_validates_and_saves_the_averaged_weights(
    table: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refit: bool
) -> None:
    """With optim.ema the checkpoint holds the average at the chosen step, not the live weights;
    with optim.refit, the average at the refit's last step."""
    seen: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    class Spy(WeightAverage):
        def update(self) -> None:
            super().update()
            names = [n for n, p in self.model.named_parameters() if p.requires_grad]
            avg = {
                n.removeprefix("model."): a.clone()
                for n, a in zip(names, self.average, strict=True)
            }
            live = {
                n.removeprefix("model."): p.detach().clone()
                for n, p in zip(names, self.params, strict=True)
            }
            seen.append((avg, live))

    monkeypatch.setattr(train_module, "WeightAverage", Spy)
    sets = ["optim.ema=0.9", "optim.max_epochs=1", "optim.eval_every=1000", f"optim.refit={refit}"]
    cfg = load_config(TINY, sets)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    result = train(cfg, table, split, tmp_path / "run", device="cpu", progress=False)
    assert result.best_step > 1  # one validation, at the last step
    assert len(seen) == result.best_step * (2 if refit else 1)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    avg, live = seen[-1]
    for name, value in avg.items():
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0)
    assert any(not torch.equal(avg[n], live[n]) for n in avg)


def test_ema_out_of_range_is_a_config_error() -> None:
    for bad in ("1.0", "-0.1"):
        with pytest.raises(SegintError, match="optim.ema"):
            load_config(TINY, [f"optim.ema={bad}"])
