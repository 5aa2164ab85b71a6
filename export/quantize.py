"""Dynamic int8 quantisation of an exported graph (an option measured by the benches, not
served by default): weights int8, activations quantised per run (VNNI kernels on AVX512-VNNI
CPUs).

The exporter's value_info is dropped first: the shapes it recorded for the scorer's 2-D Gemm
rows fail the quantiser's shape inference ("Inferred shape and existing shape differ"), and the
graph needs none of them. Tensors the inference cannot type (after a com.microsoft op such as
FusedMatMul) default to float32, which they are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx


def quantize_int8(src: Path, dst: Path) -> Path:
    """Write the dynamic int8 form of the ONNX file ``src`` to ``dst``; returns ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        onnx.save(model, str(plain))
        quantize_dynamic(
            plain,
            dst,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst
