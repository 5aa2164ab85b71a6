"""The artifact manifest: what `export/` writes and `service/` reads (no torch here).

An artifact is a folder ``artifacts/<version>/`` holding ``manifest.json``, the ONNX graph(s)
and the id vocabularies. The manifest names every graph's inputs and outputs with dtype and
shape (ints for fixed dims, strings for symbolic ones), so the service builds its feeds from
the manifest and fails at start-up, not per request, when an artifact does not fit.

Graphs by user stream (``docs/contracts.md``):

- ``self``: ``user_encoder`` (user side -> per-layer user states + user mask) and ``scorer``
  (user states + mask + candidates -> logits). The user side is computed once per user.
- ``cross``: ``model`` (the full forward; the service repeats the user inputs per candidate).

Optional parts:

- ``ctr``: a SegRec CTR head (``ctr.onnx``, `CtrSpec`): the interest model's inputs plus its
  ``interest_logits`` (B, S) -> ``ctr`` (B,), with its own id vocabularies (SegRec builds them
  from its training rows, which need not be the interest model's).
- ``features``: for content models, how the segment features were read in training
  (``l1_normalize``, the store's path); the service reads the same kind of store.
- ``precisions``: other precisions of a graph, by precision then graph name (`VariantSpec`):
  ``{"int8": {"scorer": {"file": "scorer.int8.onnx", "sha256": ...}}}``, the scorer's dynamic
  int8 form (`export.quantize`). A graph not listed there exists in fp32 only (its entry in
  ``graphs``). The service serves one of them (``SEGINT_SCORER_PRECISION``) and checks the
  file's sha256 when it opens it.
- ``watch_time``: the run's watch-time calibration (``RUN/calibration.json`` written by
  `segint evaluate`: ``temperature``, the rows that fitted it, ``served_estimate``); the
  service divides the interest logits by ``temperature`` before its exit distribution
  (`segint.watchtime`). Absent: temperature 1.

Readers look outputs up by name and ignore names they do not know.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segint.errors import SegintError

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_USERS = "vocab_users.npy"
VOCAB_VIDEOS = "vocab_videos.npy"
DTYPES = ("int64", "float32", "bool")


class ArtifactError(SegintError):
    """A missing, incomplete or incompatible artifact; the message names the file."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints (fixed) or names (symbolic dims)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file and its interface."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, self.file)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, self.file)


@dataclass(frozen=True)
class VariantSpec:
    """Another precision of one graph: its `GraphSpec`'s inputs and outputs, another file."""

    file: str
    sha256: str  # of the file's bytes (`file_sha256`)


@dataclass(frozen=True)
class CtrSpec:
    """The SegRec CTR head exported next to the interest model (graph ``ctr``)."""

    backbone: str  # widedeep | din
    mode: str  # segrec (interest-weighted), or a baseline that ignores the interest logits
    history_len: int  # views the head's history inputs hold at most (DIN attends over them)
    config_hash: str  # sha256 of the SegRec config's canonical JSON
    config: dict[str, Any]  # the full SegRecConfig as a plain dict
    label: dict[str, Any]  # the effective-view label it was trained on (edges, medians)
    source: dict[str, Any]  # the SegRec run dir and the interest model it was trained with
    vocab_users: str = "ctr_vocab_users.npy"
    vocab_videos: str = "ctr_vocab_videos.npy"
    graph: str = "ctr"


@dataclass(frozen=True)
class Manifest:
    """Everything the service needs to know about an artifact, besides the files themselves."""

    model_version: str  # names the artifact; versions the service's cache keys
    config_hash: str  # sha256 of the canonical JSON of the model config
    fingerprint: str  # sha256 of the graph files: tells two exports of one version apart
    user_stream: str  # "self" or "cross"
    s_max: int  # S: slots per video; durations must be < s_max * 5000 ms
    d_model: int  # d: token width
    n_layers: int  # L: encoder layers per modality
    history_len: int  # H: most recent views the model takes
    modalities: tuple[str, ...]
    opset: int
    exporter: str  # how the graphs were produced, e.g. "torch.onnx.export(dynamo=True) 2.13.0"
    graphs: dict[str, GraphSpec]
    config: dict[str, Any]  # the full ModelConfig as a plain dict
    created_at: str
    vocab_users: str = VOCAB_USERS
    vocab_videos: str = VOCAB_VIDEOS
    format_version: int = FORMAT_VERSION
    source: dict[str, Any] = field(default_factory=dict)  # run dir, training metadata
    ctr: CtrSpec | None = None  # the SegRec CTR head, when exported with --segrec
    features: dict[str, Any] | None = None  # content models: l1_normalize, training store
    watch_time: dict[str, Any] | None = None  # calibration.json of the run (temperature)
    # precision -> graph name -> that graph's file in this precision (graphs are fp32)
    precisions: dict[str, dict[str, VariantSpec]] = field(default_factory=dict)
    # The per-video exit table mixed into the served distribution (segint.video_table):
    # file, sha256, weight and how it was fitted; None = the network's distribution alone.
    video_table: dict[str, Any] | None = None

    def graph(self, name: str) -> GraphSpec:
        if name not in self.graphs:
            raise ArtifactError(
                f"manifest of {self.model_version!r} has no graph {name!r} "
                f"(has {sorted(self.graphs)})"
            )
        return self.graphs[name]

    def variant(self, name: str, precision: str) -> VariantSpec | None:
        """Graph ``name`` in ``precision`` (not fp32); None when the artifact has no such file."""
        return self.precisions.get(precision, {}).get(name)

    @property
    def max_duration_ms(self) -> int:
        """Longest video the model can place on its slots (``N <= s_max``)."""
        return self.s_max * 5000 - 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """Parse ``folder/manifest.json``; any problem is an `ArtifactError` naming the file."""
        path = Path(folder) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f"no artifact at {folder}: {path} does not exist") from None
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: unreadable manifest ({e})") from None
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format_version {data.get('format_version')!r}, this reader needs {FORMAT_VERSION}"
            )

        def tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            out = tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in items)
            for t in out:
                if t.dtype not in DTYPES:
                    raise ValueError(
                        f"tensor {t.name!r} has dtype {t.dtype!r}, not one of {DTYPES}"
                    )
            return out

        graphs = {
            name: GraphSpec(g["file"], tensors(g["inputs"]), tensors(g["outputs"]))
            for name, g in data["graphs"].items()
        }
        precisions = {
            precision: {name: VariantSpec(**v) for name, v in by_graph.items()}
            for precision, by_graph in data.get("precisions", {}).items()
        }
        for precision, by_graph in precisions.items():
            for name in by_graph:
                if name not in graphs:
                    raise ValueError(f"{precision} form of graph {name!r}, not in {sorted(graphs)}")
        fields = {k: v for k, v in data.items() if k not in ("graphs", "ctr", "precisions")}
        fields["modalities"] = tuple(fields["modalities"])
        ctr = CtrSpec(**data["ctr"]) if data.get("ctr") is not None else None
        manifest = cls(graphs=graphs, ctr=ctr, precisions=precisions, **fields)
        if ctr is not None and ctr.graph not in graphs:
            raise ValueError(f"ctr head names graph {ctr.graph!r}, not in {sorted(graphs)}")
        expected = {"self": {"user_encoder", "scorer"}, "cross": {"model"}}.get(
            manifest.user_stream
        )
        if expected is None or not expected <= set(graphs):
            raise ValueError(
                f"user_stream {manifest.user_stream!r} with graphs {sorted(graphs)} "
                "(self needs user_encoder + scorer, cross needs model)"
            )
        return manifest


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def files_fingerprint(paths: list[Path]) -> str:
    """sha256 over the bytes of ``paths`` in the given order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_name(specs: tuple[TensorSpec, ...], name: str, file: str) -> TensorSpec:
    for s in specs:
        if s.name == name:
            return s
    raise ArtifactError(f"{file} has no tensor {name!r} (has {[s.name for s in specs]})")
