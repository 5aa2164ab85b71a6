"""``python -m service.kernels build [--out PATH]``: compile the custom-operator library.

Where it cannot be built (not x86-64, no C++ compiler, the headers' package unreachable, the
compiler failing) it says why in one line and exits 0: the service then serves the exported
graph, and `make test`'s kernel tests fail, naming the missing library."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from service.kernels import LIBRARY, build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.kernels")
    p.add_argument("command", choices=["build"])
    p.add_argument("--out", type=Path, default=LIBRARY, help=f"library path (default {LIBRARY})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = build(args.out)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        sys.stderr.write(f"segint kernels: not built ({e}); the exported graph will be served\n")
        return 0
    sys.stdout.write(f"built {path}\n" if path else "segint kernels: not built here\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
