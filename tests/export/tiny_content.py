"""Tiny content models (id + content, self stream; content only, cross stream), a small segment
feature store written with `segint.features.FeatureWriter`, and their artifacts.

The store holds videos 1000..1019 of the vocabulary, some with fewer stored segments than a
candidate may have, plus two videos outside the vocabulary (5000, 5001: cold ids whose content
is known). Videos 1020..1027 and anything else are missing, so the service must serve them
with zero features and count them. `store_features` is the ground truth the reference
computations read directly, without `FeatureStore`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from tests.export.tiny import CONTENT_DIM, ROOT, TINY, tiny_model, write_run

CONTENT_MODELS = {
    "content-self": ("self", ("id", "content")),
    "content-cross": ("cross", ("content",)),
}
STORED = [*range(1000, 1020), 5000, 5001]  # raw video ids with features


def store_features(seed: int = 0) -> dict[int, np.ndarray]:
    """video id -> (n_stored, Dc) float32 rows, row j = segment j (1..7 segments each)."""
    rng = np.random.default_rng(seed)
    return {
        vid: rng.normal(
            0.0, 1.0, (int(rng.integers(1, int(TINY["s_max"]) + 1)), CONTENT_DIM)
        ).astype(np.float32)
        for vid in STORED
    }


def write_store(path: Path, seed: int = 0) -> Path:
    """A feature store holding `store_features(seed)`."""
    from segint.features import FeatureWriter

    with FeatureWriter(path, CONTENT_DIM, encoder="tiny-random", feature="test") as w:
        for vid, rows in store_features(seed).items():
            w.add(vid, rows)
    return path


def _key(*extra: object) -> str:
    h = hashlib.sha256(repr((TINY, CONTENT_DIM, STORED, *extra)).encode())
    code = [*sorted((ROOT / "model").glob("*.py")), *sorted((ROOT / "export").glob("*.py"))]
    for f in [*code, ROOT / "training" / "checkpoint.py", ROOT / "segint/features/writer.py"]:
        h.update(f.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def cached_store(cache_dir: Path, seed: int = 0) -> Path:
    """The store of `store_features(seed)`, written once per code version."""
    out = cache_dir / f"store-{seed}-{_key(seed)}"
    if not (out / "meta.json").exists():
        tmp = cache_dir / f".store-{seed}-tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
        write_store(tmp, seed).rename(out)
    return out


def cached_content_artifact(cache_dir: Path, name: str) -> Path:
    """The exported artifact of ``CONTENT_MODELS[name]``."""
    from export.onnx import export_run

    stream, modalities = CONTENT_MODELS[name]
    out = cache_dir / f"{name}-{_key(name)}"
    if not (out / "manifest.json").exists():
        run = write_run(cache_dir / f"run-{name}", tiny_model(stream, modalities=modalities))
        export_run(run, out, version=f"tiny-{name}", force=True)
    return out
