"""Compare two reference runs of docs/results/model_refactor.sh: every number of eval.json,
the state dict, the per-row predictions and the ONNX graphs' outputs on one random feed.

    .venv/bin/python docs/results/model_refactor_compare.py before after
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import polars as pl
import torch


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(map(str, parts)) + "\n")


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        return {k2: v2 for k, v in d.items() for k2, v2 in flat(v, f"{prefix}/{k}").items()}
    if isinstance(d, list):
        return {k2: v2 for i, v in enumerate(d) for k2, v2 in flat(v, f"{prefix}[{i}]").items()}
    return {prefix: d}


def main() -> None:
    a, b = (f"/tmp/refactor-ref/{tag}" for tag in sys.argv[1:3])
    fa, fb = (flat(json.load(open(f"{run}/eval.json"))) for run in (a, b))
    floats = [k for k, v in fa.items() if isinstance(v, float)]
    exact = [k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)]
    dp4 = [
        k for k in floats if not isinstance(fb.get(k), float) or round(fa[k], 4) != round(fb[k], 4)
    ]
    say(f"eval.json: {len(fa)} values ({len(floats)} floats); differ exactly: {len(exact)}; "
          f"floats differing at 4 dp: {len(dp4)}")  # fmt: skip
    seg = {k: round(v, 4) for k, v in fa.items() if k.startswith("/strict/SegInterest/")}
    say("strict SegInterest:", seg)
    sa, sb = (torch.load(f"{run}/model.pt", map_location="cpu") for run in (a, b))
    same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    say(f"state dict: {len(sa)} tensors, bit-identical: {same}")
    pa, pb = (pl.read_parquet(f"{run}/test.parquet") for run in (a, b))
    say(f"predictions {pa.shape}: equal: {pa.equals(pb)}")
    for graph in ("user_encoder.onnx", "scorer.onnx"):
        s1, s2 = (ort.InferenceSession(f"{run}/artifact/{graph}") for run in (a, b))
        rng, feed = np.random.default_rng(0), {}
        for i in s1.get_inputs():
            shape = [d if isinstance(d, int) else 3 for d in i.shape]
            if "int" in i.type:
                feed[i.name] = rng.integers(1, 5, size=shape).astype(np.int64)
            elif "bool" in i.type:
                feed[i.name] = np.ones(shape, dtype=bool)
            else:
                feed[i.name] = rng.standard_normal(shape).astype(np.float32)
        o1, o2 = s1.run(None, feed), s2.run(None, feed)
        say(
            graph,
            "outputs bit-identical:",
            all(np.array_equal(x, y) for x, y in zip(o1, o2, strict=True)),
        )


if __name__ == "__main__":
    main()
