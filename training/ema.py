"""An exponential moving average of a model's parameters (``optim.ema``).

After optimiser step ``t`` (1-based) each averaged tensor moves toward the live one:
``avg <- avg + (1 - d_t) (p - avg)`` with ``d_t = min(decay, (1 + t) / (10 + t))``, so the
first steps are not dominated by the initial weights (the warm-up reaches 0.98 only at step
440, so shorter runs average the same whatever the decay above it). Buffers (the exit counts) are not
averaged: they are not trained. `swapped` puts the averages into the model for validation and
saving and restores the live weights afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The running average of ``model``'s parameters, updated after each optimiser step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.model, self.decay, self.steps = model, decay, 0
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]

    def current_decay(self) -> float:
        """The decay the next `update` applies."""
        t = self.steps + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Move every average toward its parameter's value after this step."""
        weight = 1.0 - self.current_decay()
        for a, p in zip(self.average, self.params, strict=True):
            a.lerp_(p.detach(), weight)
        self.steps += 1

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the model's parameters with the averages (training ends)."""
        for p, a in zip(self.params, self.average, strict=True):
            p.copy_(a)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The averages in the model inside the block, the live weights again after it."""
        live = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live, strict=True):
                    p.copy_(v)
