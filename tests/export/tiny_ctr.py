"""A tiny SegRec CTR run on top of the tiny self-stream interest model, and its artifact.

The SegRec model is built directly (random weights, no training): export and serving only
need *some* fixed head. Its vocabularies deliberately differ from the interest model's (SegRec
builds its own from its training rows), so a service that looked ids up in the wrong
vocabulary gives a different CTR. Its history length (6) is longer than the interest model's
(5), so the service must keep more views than the interest model reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segint.vocab import Vocab
from tests.export.tiny import ROOT, TINY, tiny_model, write_run

if TYPE_CHECKING:
    from segrec.network import SegRecModel

CTR_USERS = Vocab(np.arange(102, 115))  # overlaps USERS (100..111) only partly
CTR_VIDEOS = Vocab(np.arange(1003, 1035))  # shifted against VIDEOS (1000..1027)
CTR: dict[str, Any] = {"s_max": TINY["s_max"], "history_len": 6, "emb_dim": 6, "hidden": (10,)}


def tiny_segrec(backbone: str = "din", mode: str = "segrec", seed: int = 0) -> SegRecModel:
    """A `SegRecModel` with every parameter drawn at random (eval mode)."""
    from segrec.config import SegRecConfig
    from segrec.network import SegRecModel

    cfg = SegRecConfig(
        backbone=backbone,
        mode=mode,
        n_users=len(CTR_USERS),
        n_videos=len(CTR_VIDEOS),
        att_hidden=(9,),
        **CTR,
    )
    torch.manual_seed(seed)
    model = SegRecModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def write_segrec_run(
    out: Path, interest_run: Path | None, backbone: str = "din", mode: str = "segrec"
) -> Path:
    """A run directory as `segint segrec train` writes it, trained (nominally) on the
    interest logits of ``interest_run``."""
    from segrec.labels import EffectiveViewLabel
    from segrec.train import MODEL_FILE, TrainOptions, write_run

    model = tiny_segrec(backbone, mode)
    label = EffectiveViewLabel((0.0, 30.0, 60.0), (0.5, 0.4))
    interest = None if interest_run is None else str(interest_run.resolve())
    source = {"kind": "train_file", "train": "tiny", "format": None}
    write_run(out, model.cfg, label, CTR_USERS, CTR_VIDEOS, source, TrainOptions(), interest)
    torch.save(model.state_dict(), out / MODEL_FILE)
    return out


def cached_ctr_artifact(cache_dir: Path) -> tuple[Path, Path]:
    """(artifact, SegRec run) of the tiny self model exported with the DIN CTR head."""
    from export.onnx import export_run

    h = hashlib.sha256(repr((TINY, CTR)).encode())
    code = [
        *sorted((ROOT / "model").glob("*.py")),
        *sorted((ROOT / "export").glob("*.py")),
        *sorted((ROOT / "segrec").glob("*.py")),
        ROOT / "training" / "checkpoint.py",
        Path(__file__),
    ]
    for f in code:
        h.update(f.read_bytes())
    key = h.hexdigest()[:16]
    out = cache_dir / f"self-ctr-{key}"
    segrec_run = cache_dir / f"segrec-{key}"
    if not (out / "manifest.json").exists():
        run = write_run(cache_dir / "run-self-ctr", tiny_model("self"))
        write_segrec_run(segrec_run, run)
        export_run(run, out, version="tiny-self-ctr", force=True, segrec=segrec_run)
    return out, segrec_run
