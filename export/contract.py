"""The I/O contract of every exported graph: input and output names, dtypes and axes (no torch).

One declaration, read by the exporter (`export.onnx`, `export.ctr`, `segrec.onnx`: argument
order, names and which axes are symbolic) and by the service (`service.ranker`: which feeds a
graph may ask for). Each axis is named; an axis whose name is in ``GraphContract.dynamic`` is a
symbolic dim of the ONNX file, every other axis is fixed by the model config (e.g. ``S`` =
s_max, ``d`` = d_model) or is the single user the scorer broadcasts (``1``).

Axis names (as in ``model/network.py``): ``batch`` rows, ``history`` views, ``candidates``,
``user_tokens`` (M = 1 + H), ``slots`` (the T <= S slots a ragged scorer run computes; the
caller feeds ``slot_index`` = 0..T-1, and T = S reproduces the padded model), ``S`` slots,
``n_mod`` modalities, ``L`` layers, ``d`` token width, ``Dc`` content width.

Inputs flagged ``content`` exist only in models with the content modality.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_ENCODER, SCORER, MODEL, CTR = "user_encoder", "scorer", "model", "ctr"


@dataclass(frozen=True)
class TensorContract:
    """One graph input or output."""

    name: str
    dtype: str  # int64 | float32 | bool
    axes: tuple[str, ...]  # one name per axis
    content: bool = False  # only in models with the content modality


@dataclass(frozen=True)
class GraphContract:
    """One graph: inputs in argument order (= the traced forward's), outputs, symbolic axes."""

    name: str
    file: str
    inputs: tuple[TensorContract, ...]
    outputs: tuple[TensorContract, ...]
    dynamic: frozenset[str]  # axis names exported as symbolic dims

    def input_names(self, content: bool = False) -> tuple[str, ...]:
        """Input names in argument order; content inputs only when ``content``."""
        return tuple(t.name for t in self.inputs if content or not t.content)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def dynamic_axes(self, name: str, skip: frozenset[str] = frozenset()) -> dict[int, str]:
        """Axis index -> symbolic dim name of input ``name`` (minus the names in ``skip``)."""
        t = next(t for t in (*self.inputs, *self.outputs) if t.name == name)
        return {i: a for i, a in enumerate(t.axes) if a in self.dynamic and a not in skip}


def _t(name: str, dtype: str, *axes: str, content: bool = False) -> TensorContract:
    return TensorContract(name, dtype, axes, content)


_USER_INPUTS = (
    _t("user_ids", "int64", "batch"),
    _t("hist_video_ids", "int64", "batch", "history"),
    _t("hist_exit_slots", "int64", "batch", "history"),
    _t("hist_n_segments", "int64", "batch", "history"),
    _t("hist_mask", "bool", "batch", "history"),
)

GRAPHS: dict[str, GraphContract] = {
    # Self stream, user side: computed once per user and cached.
    USER_ENCODER: GraphContract(
        USER_ENCODER,
        "user_encoder.onnx",
        (*_USER_INPUTS, _t("hist_content", "float32", "batch", "history", "Dc", content=True)),
        (
            _t("user_states", "float32", "batch", "n_mod", "L", "user_tokens", "d"),
            _t("user_mask", "bool", "batch", "user_tokens"),
        ),
        frozenset({"batch", "history", "user_tokens"}),
    ),
    # Self stream, candidate side: one user (batch 1) broadcast over C candidates, on the first
    # T slots of each; a ragged run feeds candidates of similar N with a tight T.
    SCORER: GraphContract(
        SCORER,
        "scorer.onnx",
        (
            _t("user_states", "float32", "1", "n_mod", "L", "user_tokens", "d"),
            _t("user_mask", "bool", "1", "user_tokens"),
            _t("video_ids", "int64", "candidates"),
            _t("n_segments", "int64", "candidates"),
            _t("slot_index", "int64", "slots"),
            _t("video_content", "float32", "candidates", "slots", "Dc", content=True),
        ),
        (_t("logits", "float32", "candidates", "slots"),),
        frozenset({"candidates", "user_tokens", "slots"}),
    ),
    # Cross stream: the full forward on B (user, video) rows, all S slots.
    MODEL: GraphContract(
        MODEL,
        "model.onnx",
        (
            *_USER_INPUTS,
            _t("video_ids", "int64", "batch"),
            _t("n_segments", "int64", "batch"),
            _t("hist_content", "float32", "batch", "history", "Dc", content=True),
            _t("video_content", "float32", "batch", "S", "Dc", content=True),
        ),
        (_t("logits", "float32", "batch", "S"),),
        frozenset({"batch", "history"}),
    ),
    # SegRec CTR head (`segrec.onnx.CTRHead`): the interest inputs plus the interest logits.
    CTR: GraphContract(
        CTR,
        "ctr.onnx",
        (
            _t("user_ids", "int64", "batch"),
            _t("video_ids", "int64", "batch"),
            _t("n_segments", "int64", "batch"),
            _t("hist_video_ids", "int64", "batch", "history"),
            _t("hist_exit_slots", "int64", "batch", "history"),
            _t("hist_n_segments", "int64", "batch", "history"),
            _t("hist_mask", "bool", "batch", "history"),
            _t("interest_logits", "float32", "batch", "S"),
        ),
        (_t("ctr", "float32", "batch"),),
        frozenset({"batch", "history"}),
    ),
}

# Precisions the scorer can be served in: ``fp32`` is the exported graph, ``int8`` its dynamic
# int8 form (`export.quantize`: weights int8, activations quantised per run), written beside it
# by the exporter. Only the scorer has one: it runs per request, the user encoder once per user.
FP32, INT8 = "fp32", "int8"
PRECISIONS = (FP32, INT8)
INT8_FILES = {SCORER: "scorer.int8.onnx"}  # graph name -> file of its int8 form
# The scorer with its video blocks as segint.VideoBlock nodes (export.kernel, service.kernels):
# listed under this key of the manifest's precisions (an fp32 form, same inputs and outputs).
KERNEL = "kernel"
KERNEL_FILES = {SCORER: "scorer.kernel.onnx"}
KERNEL_OP_DOMAIN, KERNEL_OP = "segint", "VideoBlock"  # its custom node (service/kernels)

# The logit of a slot a ragged scorer run did not compute (j >= T > N, an impossible outcome):
# the padded model's constant there (`model.network.IMPOSSIBLE_LOGIT`).
CUT_SLOT_LOGIT = 1e4

# Every input name any graph may take: the service refuses an artifact asking for another.
KNOWN_INPUTS = frozenset(t.name for g in GRAPHS.values() for t in g.inputs)
CONTENT_INPUTS = frozenset(t.name for g in GRAPHS.values() for t in g.inputs if t.content)
