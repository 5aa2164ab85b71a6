"""Rewrites of an exported ONNX graph for ONNX Runtime's CPU kernels (same outputs).

``fuse_transposed_matmuls``: ``MatMul(a, Transpose(b))`` whose Transpose swaps the last two
axes becomes ``com.microsoft.FusedMatMul(a, b, transB=1)``. ONNX Runtime has the same fusion
(MatmulTransposeFusion), but its transpose optimiser runs first: in the scorer's video blocks
it moves the heads-first permute of the keys through their Split and merges it with the
key transpose into one permute that moves the innermost axis, (C, T, h, dh) -> (h, C, dh, T),
which no longer matches the fusion and is the slowest Transpose of the graph (a copy that
strides every element). Fused before ONNX Runtime sees it, the keys stay (h, C, T, dh) rows
and the GEMM reads them transposed.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

MS_DOMAIN = "com.microsoft"


def fuse_transposed_matmuls(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place; returns how many MatMuls became FusedMatMul(transB=1)."""
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    replace: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()  # indices of the Transposes fused away
    for i, node in enumerate(nodes):
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        j = producer.get(node.input[1])
        if j is None:
            continue
        t = nodes[j]
        if t.op_type != "Transpose" or not _swaps_last_two(t):
            continue
        if readers.get(t.output[0], 0) != 1 or t.output[0] in graph_outputs:
            continue  # the transposed tensor is needed elsewhere: keep it
        replace[i] = helper.make_node(
            "FusedMatMul",
            [node.input[0], t.input[0]],
            list(node.output),
            name=f"{node.name}/transB",
            domain=MS_DOMAIN,
            transB=1,
            alpha=1.0,
        )
        dropped.add(j)
    if not replace:
        return 0
    kept = [_copy(replace.get(i, n)) for i, n in enumerate(nodes) if i not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(replace)


def rewrite_file(path: Path) -> int:
    """`fuse_transposed_matmuls` on the ONNX file at ``path``, saved in place."""
    model = onnx.load(str(path))
    n = fuse_transposed_matmuls(model)
    if n:
        onnx.save(model, str(path))
    return n


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    out = onnx.NodeProto()
    out.CopyFrom(node)
    return out


def _swaps_last_two(node: onnx.NodeProto) -> bool:
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
    if perm is None or len(perm) < 2:
        return False
    r = len(perm)
    return perm == [*range(r - 2), r - 1, r - 2]
