"""Sub-commands of the `segint` CLI; each module exposes ``register(subparsers)``. Here: the
argparse value types they share."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """argparse ``type`` of every float flag: a number, never nan or +-inf (which ``float``
    accepts and every comparison with a bound lets through)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value
