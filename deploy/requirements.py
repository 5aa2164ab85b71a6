"""Writes requirements-<extra>.txt (the dependencies plus one extra) from pyproject.toml.

Used by the Dockerfile's ``deps`` stage: the engine's built-in Dockerfile frontend (Docker
20.10) parses no heredocs, so the script lives in a file. Standard library only.

    python deploy/requirements.py PYPROJECT OUT_DIR
"""

import sys
import tomllib
from pathlib import Path

EXTRAS = ("serve-cpu", "serve", "train", "export-cpu")


def main(pyproject: Path, out: Path) -> None:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    for name in EXTRAS:
        reqs = project["dependencies"] + extras[name]
        (out / f"requirements-{name}.txt").write_text("\n".join(reqs) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
