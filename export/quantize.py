"""Dynamic int8 quantisation of an exported graph: weights int8, activations quantised per run
(VNNI kernels on AVX512-VNNI CPUs). The weights use 7 bits (``reduce_range``): without VNNI,
ONNX Runtime multiplies u8 activations by s8 weights in pairs summed in 16 bits (AVX2's
vpmaddubsw), which saturates with 8-bit weights (255 * 127 * 2 > 32767) and not with 7-bit
ones (255 * 63 * 2 < 32767). On the base model this took the largest logit change from 0.158
to 0.013 (docs/serving.md, round 12); a file quantised once serves on either kind of CPU. `segint export` writes the scorer's int8 form beside it
(``export.contract.INT8_FILES``); the service serves it with ``SEGINT_SCORER_PRECISION``.

The exporter's value_info is dropped first: the shapes it recorded for the scorer's 2-D Gemm
rows fail the quantiser's shape inference ("Inferred shape and existing shape differ"), and the
graph needs none of them. Tensors the inference cannot type (after a com.microsoft op such as
FusedMatMul) default to float32, which they are. While it runs, the quantiser's root-logger
records below WARNING (one per tensor) and its warnings about exactly these two things ("Please
consider to run pre-processing", "Failed to infer data type") are dropped; any other warning
passes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from segint.errors import SegintError


def require_quantizer() -> None:
    """Raise `SegintError` when ONNX Runtime's quantiser cannot be imported."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as e:
        raise SegintError(
            f"the scorer's int8 form needs onnxruntime.quantization ({e}): install onnxruntime "
            "(extra export-cpu) or onnxruntime-gpu (extra serve) beside the train extra"
        ) from None


def quantize_int8(src: Path, dst: Path) -> Path:
    """Write the dynamic int8 form of the ONNX file ``src`` to ``dst``; returns ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory() as tmp, _known_warnings_dropped():
        plain = Path(tmp) / "plain.onnx"
        onnx.save(model, str(plain))
        quantize_dynamic(
            plain,
            dst,
            weight_type=QuantType.QInt8,
            reduce_range=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


# Warnings of onnxruntime.quantization (root logger) that the module docstring accounts for.
_KNOWN = ("Please consider to run pre-processing before quantization", "Failed to infer data type")


@contextmanager
def _known_warnings_dropped() -> Iterator[None]:
    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not str(record.msg).startswith(_KNOWN)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
