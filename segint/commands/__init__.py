"""Sub-commands of the `segint` CLI; each module exposes ``register(subparsers)``. Here: the
argparse value types and option checks they share."""

from __future__ import annotations

import argparse
import math

from segint.errors import SegintError


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


def check_bootstrap(replicates: int, none_allowed: bool = True) -> None:
    """Refuse a ``--bootstrap`` that gives no standard error: 1 replicate, a negative count,
    or 0 where the command has nothing to report without one (``none_allowed`` False)."""
    if none_allowed and (replicates < 0 or replicates == 1):
        raise SegintError(f"--bootstrap must be 0 (none) or >= 2, got {replicates}")
    if not none_allowed and replicates < 2:
        raise SegintError(f"--bootstrap must be >= 2, got {replicates}")
