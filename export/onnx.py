"""Export a trained `SegmentInterestModel` to ONNX graphs plus a manifest (the serving artifact).

Every graph goes through the pinned exporter of `export.graph`, because its defaults drift
across torch versions (SERVING-NOTES 2.3). Example inputs use sizes >= 2 on every dynamic
axis: torch.export specializes axes of size 0 or 1.

Graphs (shape legend as in ``model/network.py``):

- self stream: ``user_encoder``: user_ids (B,), hist_* (B, H) -> user_states
  (B, n_mod, L, M, d) float32, user_mask (B, M) bool, M = 1 + H; and ``scorer``:
  user_states (1, n_mod, L, M, d), user_mask (1, M), video_ids (C,), n_segments (C,),
  slot_index (T,) -> logits (C, T). The scorer's user batch is fixed at 1: one user broadcast
  over C candidates (two independent symbolic batch axes cannot broadcast against each other in
  torch.export). ``slot_index`` = 0..T-1 makes it ragged: candidates with N < T are scored on
  T slots only (T = S is the padded model).
- cross stream: ``model``: the full forward on B rows -> logits (B, S).

- ``scorer.int8.onnx`` (self stream): the scorer's dynamic int8 form (`export.quantize`),
  listed in the manifest's ``precisions`` with its sha256; served with
  ``SEGINT_SCORER_PRECISION=int8``.

- ``scorer.kernel.onnx`` (self stream, models the kernel fits: `export.kernel`): the scorer
  with each video block as one ``segint.VideoBlock`` node, listed under ``precisions.kernel``;
  the service runs it on CPU when the custom-operator library is built (`service.kernels`).

- with ``--segrec``: ``ctr``, the SegRec CTR head (`export.ctr`): the interest inputs on B rows
  plus interest_logits (B, S) -> ctr (B,).

Every graph's names, dtypes and symbolic axes are declared once in `export.contract`.

Entry points: ``segint export --model RUN_DIR [--segrec SEGREC_RUN] --out artifacts/VERSION``
or `export_run`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn
from torch.export import Dim

from export.contract import (
    GRAPHS,
    INT8,
    INT8_FILES,
    KERNEL,
    KERNEL_FILES,
    MODEL,
    SCORER,
    USER_ENCODER,
    GraphContract,
)
from export.ctr import export_ctr, load_checked_run
from export.fused import fused_copy, scorer_softmax
from export.graph import EXPORTER, OPSET, export_graph
from export.kernel import kernel_copy, kernel_unfit, translations
from export.manifest import (
    VOCAB_USERS,
    VOCAB_VIDEOS,
    CtrSpec,
    GraphSpec,
    Manifest,
    VariantSpec,
    config_hash,
    file_sha256,
    files_fingerprint,
)
from export.quantize import quantize_int8, require_quantizer
from export.rewrite import rewrite_file
from model.config import ModelConfig
from model.network import SegmentInterestModel
from segint.errors import SegintError
from segint.provenance import read as read_provenance
from segint.video_table import VideoTable, read_run_table
from segint.watchtime import read_calibration

log = logging.getLogger(__name__)


class UserEncoder(nn.Module):
    """``model.encode_user`` as a module (its arguments become the graph's input names)."""

    def __init__(self, model: SegmentInterestModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        user_ids: Tensor,
        hist_video_ids: Tensor,
        hist_exit_slots: Tensor,
        hist_n_segments: Tensor,
        hist_mask: Tensor,
        hist_content: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = self.model.encode_user(
            user_ids, hist_video_ids, hist_exit_slots, hist_n_segments, hist_mask, hist_content
        )
        return out


class Scorer(nn.Module):
    """``model.score`` as a module (its arguments become the graph's input names)."""

    def __init__(self, model: SegmentInterestModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        user_states: Tensor,
        user_mask: Tensor,
        video_ids: Tensor,
        n_segments: Tensor,
        slot_index: Tensor,
        video_content: Tensor | None = None,
    ) -> Tensor:
        out: Tensor = self.model.score(
            user_states, user_mask, video_ids, n_segments, video_content, slot_index
        )
        return out


def example_inputs(
    cfg: ModelConfig, rows: int = 3, history: int = 4, seed: int = 0
) -> dict[str, Tensor]:
    """Random valid inputs of every name the graphs take (rows >= 2, history >= 2)."""
    g = torch.Generator().manual_seed(seed)
    n_seg = torch.randint(1, cfg.s_max + 1, (rows, history), generator=g)
    out = {
        "user_ids": torch.randint(0, cfg.n_users, (rows,), generator=g),
        "hist_video_ids": torch.randint(0, cfg.n_videos, (rows, history), generator=g),
        "hist_exit_slots": (torch.rand(rows, history, generator=g) * (n_seg + 1)).long(),
        "hist_n_segments": n_seg,
        "hist_mask": torch.rand(rows, history, generator=g) < 0.7,
        "video_ids": torch.randint(0, cfg.n_videos, (rows,), generator=g),
        "n_segments": torch.randint(1, cfg.s_max + 1, (rows,), generator=g),
    }
    if "content" in cfg.modalities:
        out["hist_content"] = torch.randn(rows, history, cfg.content_dim, generator=g)
        out["video_content"] = torch.randn(rows, cfg.s_max, cfg.content_dim, generator=g)
    return out


def export_model(
    model: SegmentInterestModel,
    out_dir: Path,
    opset: int = OPSET,
    layout: str = "heads_first",
    tilt: str = "elementwise",
    rewrite: bool = True,
    values: str = "joined",
    unbind: str = "split",
    softmax: str = "deferred",
) -> dict[str, GraphSpec]:
    """Write the stream's ONNX graph(s) into ``out_dir``; returns their specs by graph name.

    Names, argument order and symbolic axes come from `export.contract`; ``layout``, ``tilt``,
    ``values``, ``unbind`` and ``softmax`` choose the scorer's inference form
    (`export.fused.fused_copy`), ``rewrite`` its
    graph rewrite (`export.rewrite`); the defaults are what is served, the others are the
    bench's "before" forms. ``layout="kernel"``: the served form with each video block as one
    ``segint.VideoBlock`` node (`export.kernel`; ``export_kernel_scorer``), the scorer only (its
    user encoder is the exported one).
    """
    cfg: ModelConfig = model.cfg
    model = model.eval()
    content = "content" in cfg.modalities
    ex = example_inputs(cfg)
    # M = 1 without history tokens: a size-1 axis cannot be symbolic.
    fixed = frozenset() if cfg.history_tokens else frozenset({"user_tokens"})
    graphs: dict[str, GraphSpec] = {}
    if cfg.user_stream == "self":
        encoder = UserEncoder(model)
        spec = GRAPHS[USER_ENCODER]
        args = tuple(ex[n] for n in spec.input_names(content))
        if layout != "kernel":
            graphs[USER_ENCODER] = _export(encoder, args, spec, content, fixed, out_dir, opset)
        with torch.no_grad():
            states, mask = encoder(*args)
        # Scorer examples: one user (batch 1, broadcast), C = 3 candidates, T = S - 1 slots
        # (>= 2, and not S: an example axis equal to a constant would be specialised).
        slots = max(2, cfg.s_max - 1)
        ex["slot_index"] = torch.arange(slots)
        ex["n_segments"] = ex["n_segments"].clamp(1, max(1, slots - 1))
        if content:
            ex["video_content"] = ex["video_content"][:, :slots]
        ex |= {"user_states": states[:1], "user_mask": mask[:1]}
        spec = GRAPHS[SCORER]
        args = tuple(ex[n] for n in spec.input_names(content))
        # The scorer runs per request: its video side gets the inference form of
        # `export.fused` (same outputs, fewer and larger operators).
        if layout == "kernel":  # the blocks as segint.VideoBlock nodes (export.kernel)
            scorer, table = Scorer(kernel_copy(model)), translations()
        else:
            scorer, table = Scorer(fused_copy(model, layout, tilt, values, unbind, softmax)), None
        graphs[SCORER] = _export(scorer, args, spec, content, fixed, out_dir, opset, table)
        if rewrite:
            rewrite_file(out_dir / spec.file)
    else:
        spec = GRAPHS[MODEL]
        args = tuple(ex[n] for n in spec.input_names(content))
        graphs[MODEL] = _export(model, args, spec, content, fixed, out_dir, opset)
    return graphs


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    spec: GraphContract,
    content: bool,
    fixed: frozenset[str],
    out_dir: Path,
    opset: int,
    translations: dict[Any, Any] | None = None,
) -> GraphSpec:
    """`export_graph` with the names and symbolic axes the contract declares for ``spec``."""
    names = list(spec.input_names(content))
    dims: dict[str, Dim] = {}
    shapes = {
        n: {i: dims.setdefault(a, Dim(a)) for i, a in spec.dynamic_axes(n, fixed).items()}
        for n in names
    }
    return export_graph(
        module, args, names, list(spec.output_names), shapes, out_dir / spec.file, opset,
        translations,
    )  # fmt: skip


def export_run(
    run_dir: str | Path,
    out: str | Path,
    version: str | None = None,
    force: bool = False,
    segrec: str | Path | None = None,
) -> Manifest:
    """Export a training run (see `training.checkpoint`) to the artifact folder ``out``.

    The artifact is built in a temporary sibling folder and renamed into place, so a reader
    never sees half of one. Everything is checked before the first graph is exported.

    Args:
        run_dir: training run with model.pt, config.yaml and the vocabularies.
        out: artifact folder, conventionally ``artifacts/<version>``.
        version: model version (cache keys use it); default: the name of ``out``.
        force: replace an existing artifact at ``out``.
        segrec: a ``segint segrec train`` run whose CTR head is exported too (``ctr.onnx``);
            in mode segrec it must have been trained on ``run_dir``'s interest logits.

    Raises:
        SegintError: bad run directory, a SegRec run that does not fit (`export.ctr`), or
            ``out`` exists and ``force`` is False.
    """
    from training.checkpoint import load_model

    out = Path(out)
    if out.exists() and not force:
        raise SegintError(f"{out} already exists (pass --force to replace it)")
    model, cfg, users, videos = load_model(run_dir)
    version = version or out.name
    if not version or any(c in version for c in "{}: \t\n"):
        raise SegintError(
            f"model version {version!r} must be non-empty without braces, colons or spaces"
        )
    ctr_run = None if segrec is None else load_checked_run(segrec, run_dir, cfg.s_max)
    video_table = read_run_table(run_dir)
    if video_table is not None:
        video_table.check(len(videos), cfg.s_max, str(run_dir))
    if cfg.user_stream == "self":  # the scorer's int8 form is written too (write_int8_forms)
        require_quantizer()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graphs = export_model(model, tmp)
        precisions = write_int8_forms(graphs, tmp)
        kernel = export_kernel_scorer(model, tmp) if SCORER in graphs else None
        if kernel is not None:  # the scorer with segint.VideoBlock nodes (service.kernels)
            precisions[KERNEL] = {SCORER: VariantSpec(kernel.name, file_sha256(kernel))}
        ctr = None
        if ctr_run is not None:
            graphs["ctr"], ctr = export_ctr(ctr_run, tmp, OPSET)
        users.save(tmp / VOCAB_USERS)
        videos.save(tmp / VOCAB_VIDEOS)
        manifest = build_manifest(
            cfg,
            graphs,
            tmp,
            version,
            source={
                "run_dir": str(Path(run_dir).resolve()),
                "provenance": read_provenance(run_dir),
                **({"scorer_form": scorer_softmax(model)} if cfg.user_stream == "self" else {}),
            },
            ctr=ctr,
            features=_content_features(run_dir) if "content" in cfg.modalities else None,
            watch_time=read_calibration(run_dir),
            precisions=precisions,
            video_table=None if video_table is None else _copy_video_table(video_table, tmp),
        )
        manifest.write(tmp)
        make_readable(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s (%s stream) to %s", version, cfg.user_stream, out)
    return manifest


def export_kernel_scorer(model: SegmentInterestModel, folder: Path) -> Path | None:
    """Write ``folder/scorer.kernel.onnx`` (`export.kernel`: each video block one
    ``segint.VideoBlock`` node) for ``model``; None (logged) when the kernel does not fit it."""
    reason = kernel_unfit(model)
    if reason is not None:
        log.info("no kernel scorer: %s", reason)
        return None
    scratch = folder / ".kernel"
    scratch.mkdir()
    try:
        graphs = export_model(model, scratch, layout="kernel", rewrite=False)
        path = folder / KERNEL_FILES[SCORER]
        shutil.move(scratch / graphs[SCORER].file, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def write_int8_forms(
    graphs: dict[str, GraphSpec], folder: Path
) -> dict[str, dict[str, VariantSpec]]:
    """Quantise every exported graph that has an int8 form (the scorer) into ``folder``; returns
    the manifest's ``precisions`` entry (empty for the cross stream, which has no scorer)."""
    int8: dict[str, VariantSpec] = {}
    for name, file in INT8_FILES.items():
        if name in graphs:
            path = quantize_int8(folder / graphs[name].file, folder / file)
            int8[name] = VariantSpec(file, file_sha256(path))
    return {INT8: int8} if int8 else {}


def make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644 under ``folder``, whatever the umask.

    ``tempfile.mkdtemp`` creates the artifact folder 0700; renamed into place it stayed so,
    and a server running as another user (the serving image's uid 10001, reading a
    bind-mounted ``artifacts/``) could not open it. An artifact holds no secrets.
    """
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_manifest(
    cfg: ModelConfig,
    graphs: dict[str, GraphSpec],
    folder: Path,
    version: str,
    source: dict[str, Any] | None = None,
    opset: int = OPSET,
    ctr: CtrSpec | None = None,
    features: dict[str, Any] | None = None,
    watch_time: dict[str, Any] | None = None,
    precisions: dict[str, dict[str, VariantSpec]] | None = None,
    video_table: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of graphs already written to ``folder``. The fingerprint covers the fp32
    graphs: the int8 scorer derives from them, and carries its own sha256."""
    config = cfg.to_dict()
    return Manifest(
        model_version=version,
        config_hash=config_hash(config),
        fingerprint=files_fingerprint([folder / graphs[g].file for g in sorted(graphs)]),
        user_stream=cfg.user_stream,
        s_max=cfg.s_max,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        history_len=cfg.history_len,
        modalities=tuple(cfg.modalities),
        opset=opset,
        exporter=EXPORTER,
        graphs=graphs,
        config=config,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=source or {},
        ctr=ctr,
        features=features,
        watch_time=watch_time,
        precisions=precisions or {},
        video_table=video_table,
    )


def _copy_video_table(table: VideoTable, folder: Path) -> dict[str, Any]:
    """Write the run's per-video exit table into the artifact; its manifest entry."""
    path = table.write(folder)
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "weight": table.weight,
        "videos": int((table.n_segments > 0).sum()),
        "fitted": table.meta,
    }


def _content_features(run_dir: str | Path) -> dict[str, Any]:
    """How a content model's run read its segment features (the ``features`` section of its
    config.yaml: the store and whether vectors were L1-normalised), for the service."""
    from training.checkpoint import CONFIG_FILE

    raw = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())
    section = raw.get("features") or {}
    return {
        "l1_normalize": bool(section.get("l1_normalize", False)),
        "store": str(section.get("store", "")),
    }
