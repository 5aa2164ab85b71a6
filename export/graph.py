"""The pinned ONNX exporter, shared by every graph of an artifact (`export.onnx` for the
interest graphs, `export.ctr` for the SegRec head): the dynamo exporter (``dynamo=True``),
``OPSET``, weights inside the ``.onnx`` file (``external_data=False``), dynamic axes given as
``torch.export.Dim``, and the graph's inputs/outputs read back as a `GraphSpec`. It imports
neither of its callers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from export.manifest import GraphSpec, TensorSpec
from segint.errors import SegintError

log = logging.getLogger(__name__)

OPSET = 20  # torch 2.13's default, pinned so an upgrade cannot change it silently
EXPORTER = f"torch.onnx.export(dynamo=True, external_data=False) torch {torch.__version__}"
_ONNX_DTYPES: dict[int, str] = {
    int(onnx.TensorProto.INT64): "int64",
    int(onnx.TensorProto.FLOAT): "float32",
    int(onnx.TensorProto.BOOL): "bool",
}


def graph_spec(path: Path) -> GraphSpec:
    """Inputs and outputs of an ONNX file as written (symbolic dims keep their names)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim)
        return TensorSpec(v.name, _ONNX_DTYPES[t.elem_type], shape)

    return GraphSpec(
        path.name, tuple(spec(v) for v in graph.input), tuple(spec(v) for v in graph.output)
    )


def export_graph(
    module: nn.Module,
    args: tuple[Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, Any],
    path: Path,
    opset: int,
    translations: dict[Any, Any] | None = None,
) -> GraphSpec:
    """Export ``module(*args)`` to ``path`` with the pinned exporter settings.

    Args:
        module: the module to trace (eval mode).
        args: example inputs, positional, in ``input_names`` order.
        input_names: graph input names (= the forward's argument names).
        output_names: graph output names.
        dynamic: per input name, axis -> `torch.export.Dim`; unlisted inputs are static.
        path: the ``.onnx`` file to write.
        opset: ONNX opset.
        translations: the exporter's ``custom_translation_table`` (torch custom operators ->
            ONNX functions; `export.kernel`), if any.

    Returns:
        The written graph's inputs and outputs.
    """
    log.info("exporting %s", path.name)
    # dynamic_shapes keyed by argument name (= input name); unlisted inputs are static.
    shapes = {n: dynamic.get(n, {}) for n in input_names}
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=opset,
            external_data=False,
            dynamic_shapes=shapes,
            input_names=input_names,
            output_names=output_names,
            optimize=True,
            verify=False,
            custom_translation_table=translations,
        )
    if program is None:
        raise SegintError(f"{path.name}: the exporter returned no program")
    program.save(str(path), external_data=False)
    return graph_spec(path)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter prints progress lines, logs every optimizer pass at INFO and warns about
    axis renames we do not use; keep the CLI's output to our own lines."""
    quiet = {
        "onnxscript": logging.WARNING,
        "onnx_ir": logging.WARNING,
        "torch.onnx": logging.WARNING,
        # "torchvision is not installed. Skipping torchvision::..." for every export.
        "torch.onnx._internal.exporter._registration": logging.ERROR,
    }
    loggers = [logging.getLogger(n) for n in quiet]
    levels = [lg.level for lg in loggers]
    try:
        for lg, level in zip(loggers, quiet.values(), strict=True):
            lg.setLevel(level)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
