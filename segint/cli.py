"""The `segint` command line: one entry point, one sub-command module per job.

Each module in `segint.commands` exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace, returning an exit code). Heavy imports
(torch, onnxruntime) happen inside those functions, so `segint --help` stays fast.
Bad input ends with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from segint import __version__
from segint.errors import SegintError

# Sub-command modules, in the order `segint --help` lists them.
COMMANDS = [
    "data",
    "baselines",
    "train",
    "evaluate",
    "compare",
    "plot",
    "export",
    "segrec",
    "features",
]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="segint", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"segint {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"segint.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"segint.commands.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SegintError as e:
        sys.stderr.write(f"segint {args.command}: error: {e}\n")
        return 2
    except BrokenPipeError:  # e.g. `segint baselines ... | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python's exit flush quiet
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("segint: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
