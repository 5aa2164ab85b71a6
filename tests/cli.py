"""Run the `segint` CLI in a child process, as a user would (exit code, stdout, stderr)."""

from __future__ import annotations

import subprocess
import sys


def segint(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m segint.cli ARGS`` with captured text output; never raises on failure."""
    return subprocess.run(
        [sys.executable, "-m", "segint.cli", *args], capture_output=True, text=True
    )
