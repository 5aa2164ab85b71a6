"""Export a SegRec CTR head (``segint segrec train`` run) into an interest model's artifact.

The head is `segrec.onnx.CTRHead`: the interest model's named inputs plus its logits,
``interest_logits`` (B, S), -> ``ctr`` (B,) = sigmoid(sum_j w_j y_j) over the video's real slots,
with ``w = softmax(p)`` in mode ``segrec``, survival weights in mode ``survival``; in mode
``features`` the video-level backbone reads summaries of the same logits
(`segrec.network.interest_features`). Every mode has the same eight inputs, so the service
feeds every head alike; the manifest's ``ctr`` entry names the variant (backbone, mode) and
``/healthz`` reports it as ``ctr_head``. It goes through the same pinned exporter as the
interest graphs (`export.graph.export_graph`: dynamo, opset 20, weights inside the file); its
names and symbolic axes (batch, history) are declared in `export.contract`.

Refused (`SegintError`, CLI exit 2), because the served CTR would silently be wrong:

- modes ``segrec``, ``survival``, ``features`` trained on another interest model's logits
  than the one exported (SegRec records the resolved path of ``--interest-model``; we compare
  it with ``--model``);
- mode ``itemposition``: its weights are ItemPosition profiles the artifact does not carry;
- a content field (``content_dim > 0``) or a slot count other than the interest model's;
- a head trained on another data file, other filters or another split than the interest model
  (`segint.provenance`; runs made before provenance was recorded are not checked).

Baseline modes that ignore the interest logits (video, segsum, segmean, segadjust) are
exported as they are; the manifest records the mode.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from export.contract import CTR, GRAPHS
from export.graph import export_graph
from export.manifest import CtrSpec, GraphSpec, config_hash
from segint.errors import SegintError
from segrec.config import INTEREST_MODES

log = logging.getLogger(__name__)

CTR_FILE = GRAPHS[CTR].file
# `CTRHead.forward`'s arguments, in order: also the graph's input names (`export.contract`).
CTR_INPUTS = GRAPHS[CTR].input_names()


def load_checked_run(segrec_dir: str | Path, interest_dir: str | Path, interest_s_max: int) -> Any:
    """Load a SegRec run (`segrec.train.SegRecRun`) and check it fits the exported model.

    Raises:
        SegintError: not a SegRec run, or one the artifact cannot serve (see module doc).
    """
    from segrec.train import load_run

    run = load_run(segrec_dir)
    cfg = run.cfg
    if cfg.mode == "itemposition":
        raise SegintError(
            f"{segrec_dir} is an itemposition head: its slot weights are ItemPosition "
            "profiles, which the service does not have; export a segrec-mode run"
        )
    if cfg.content_dim:
        raise SegintError(
            f"{segrec_dir} has a content field; CTR heads with content are not served"
        )
    if cfg.s_max != interest_s_max:
        raise SegintError(
            f"{segrec_dir} has s_max {cfg.s_max}, the exported interest model {interest_s_max}"
        )
    if cfg.mode in INTEREST_MODES:
        trained_on = run.interest_model
        if trained_on is None:
            raise SegintError(f"{segrec_dir} (mode {cfg.mode}) does not record its interest model")
        if Path(trained_on).resolve() != Path(interest_dir).resolve():
            raise SegintError(
                f"{segrec_dir} was trained on the interest logits of {trained_on}, not of the "
                f"exported model {Path(interest_dir).resolve()}"
            )
    _check_same_data(run, segrec_dir, interest_dir)
    return run


def _check_same_data(run: Any, segrec_dir: str | Path, interest_dir: str | Path) -> None:
    """Refuse a head trained on another file, filters or split than the interest model: its
    test rows (on which it was selected) could be the interest model's training rows."""
    from segint import provenance

    interest, head = provenance.read(interest_dir), run.source.get("provenance")
    if interest is None or head is None:
        log.warning("%s or %s records no provenance: data not checked", segrec_dir, interest_dir)
        return
    provenance.check_same_source(interest, head, f"the exported model {interest_dir}")


def example_inputs(cfg: Any, rows: int = 3, history: int = 4, seed: int = 0) -> dict[str, Tensor]:
    """Random valid inputs of the head (rows >= 2, history >= 2: size-1 axes specialise)."""
    g = torch.Generator().manual_seed(seed)
    n_seg = torch.randint(1, cfg.s_max + 1, (rows, history), generator=g)
    return {
        "user_ids": torch.randint(0, cfg.n_users, (rows,), generator=g),
        "video_ids": torch.randint(0, cfg.n_videos, (rows,), generator=g),
        "n_segments": torch.randint(1, cfg.s_max + 1, (rows,), generator=g),
        "hist_video_ids": torch.randint(0, cfg.n_videos, (rows, history), generator=g),
        "hist_exit_slots": (torch.rand(rows, history, generator=g) * (n_seg + 1)).long(),
        "hist_n_segments": n_seg,
        "hist_mask": torch.rand(rows, history, generator=g) < 0.7,
        "interest_logits": torch.randn(rows, cfg.s_max, generator=g),
    }


def export_ctr(run: Any, out_dir: Path, opset: int) -> tuple[GraphSpec, CtrSpec]:
    """Write ``ctr.onnx`` and the head's vocabularies into ``out_dir``.

    Args:
        run: a `segrec.train.SegRecRun` (from `load_checked_run`).
        out_dir: the artifact folder being built.
        opset: the artifact's ONNX opset.

    Returns:
        The graph's spec and the manifest's ``ctr`` entry.
    """
    cfg = run.cfg
    log.info("exporting the %s/%s CTR head of %s", cfg.backbone, cfg.mode, run.path)
    spec = export_head(run.model, out_dir / CTR_FILE, opset)
    config = cfg.to_dict()
    ctr = CtrSpec(
        backbone=cfg.backbone,
        mode=cfg.mode,
        history_len=cfg.history_len,
        config_hash=config_hash(config),
        config=config,
        label=run.label.to_dict(),
        source={
            "run_dir": str(Path(run.path).resolve()),
            "interest_model": run.interest_model,
            "crossfit": run.crossfit,
            "valid_auc": run.valid_auc,
            "provenance": run.source.get("provenance"),
        },
    )
    run.users.save(out_dir / ctr.vocab_users)
    run.videos.save(out_dir / ctr.vocab_videos)
    return spec, ctr


def export_head(model: Any, path: Path, opset: int) -> GraphSpec:
    """Export `segrec.onnx.CTRHead` of a `SegRecModel` (eval mode) to ``path`` through the
    pinned exporter (`export.graph.export_graph`), names and axes from `export.contract`.
    A DIN backbone is exported in its inference form (a copy with
    `segrec.network.DIN.split_first_layer`; ``model`` is left as it is)."""
    from segrec.network import DIN
    from segrec.onnx import CTRHead

    if isinstance(model.backbone, DIN):
        model = copy.deepcopy(model).eval()
        model.backbone.split_first_layer()
    spec = GRAPHS[CTR]
    dims: dict[str, torch.export.Dim] = {}
    dynamic = {
        n: {i: dims.setdefault(a, torch.export.Dim(a)) for i, a in spec.dynamic_axes(n).items()}
        for n in CTR_INPUTS
    }
    ex = example_inputs(model.cfg)
    return export_graph(
        CTRHead(model).eval(),
        tuple(ex[n] for n in CTR_INPUTS),
        list(CTR_INPUTS),
        list(spec.output_names),
        dynamic,
        path,
        opset,
    )
