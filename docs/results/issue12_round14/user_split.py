"""Round 14, tried and not kept: the kernel scorer's user-only nodes run once per request.

`bench/bench_service.py`'s base artifact, `scorer.kernel.onnx`: the nodes that depend on
``user_states`` / ``user_mask`` (and initializers) only are found in topological order, the
graph is split in two at the tensors that cross (`onnx.utils.extract_model`): a user part
(``user_states``, ``user_mask`` -> those tensors) and a video part (the video inputs and those
tensors -> the outputs). One `Ranker` (the service's loading, one ORT thread) scores 20
requests of fresh KuaiRand candidates per C, and each request's bucket runs (their feeds, as
the ranker made them) are replayed both ways, alternated 15 times: the single graph once per
run, or the user part once per request and the video part once per run. Prints the largest
output difference, the median time of each and the mean paired ratio split / single +- SE.

Run: taskset -c 0 .venv/bin/python docs/results/issue12_round14/user_split.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import bench_service as b  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from service import kernels  # noqa: E402
from service.history import History  # noqa: E402
from service.ranker import Ranker, Timings, _open_session  # noqa: E402

USER_INPUTS = ("user_states", "user_mask")


def split(path: Path, folder: Path) -> tuple[Path, Path, list[str], int]:
    """(user part, video part, the crossing tensors, how many user-only nodes)."""
    g = onnx.load(str(path)).graph
    constant = {i.name for i in g.initializer}
    known, user_nodes = set(USER_INPUTS), []
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type == "Constant":
            constant.update(n.output)
        elif ins and all(i in known or i in constant for i in ins) and known & set(ins):
            user_nodes.append(n)
            known.update(n.output)
    made = {o for n in user_nodes for o in n.output}
    rest = [n for n in g.node if n not in user_nodes]
    crossing = sorted({i for n in rest for i in n.input if i in made})
    video_inputs = [i.name for i in g.input if i.name not in USER_INPUTS] + crossing
    user, video = folder / "user.onnx", folder / "video.onnx"
    onnx.utils.extract_model(str(path), str(user), list(USER_INPUTS), crossing)
    onnx.utils.extract_model(str(path), str(video), video_inputs, [o.name for o in g.output])
    return user, video, crossing, len(user_nodes)


def main() -> None:
    artifact, _ = b.base_artifact()
    m = Manifest.read(artifact)
    ranker = Ranker.load(artifact)
    assert ranker.kernel, "the kernel scorer did not load"
    single = ranker.sessions["scorer"]
    outputs = [o.name for o in single.get_outputs()]
    lib = kernels.library(None)
    with tempfile.TemporaryDirectory() as tmp:
        user_path, video_path, crossing, n_user = split(artifact / "scorer.kernel.onnx", Path(tmp))
        user = _open_session(user_path, False, 1, False, custom_ops=lib)
        video = _open_session(video_path, False, 1, False, custom_ops=lib)
    sys.stdout.write(f"{n_user} user-only nodes; crossing tensors {crossing}\n")
    video_inputs = [i.name for i in video.get_inputs()]
    videos = b.kuairand_videos(m.s_max)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(videos[0]), 20)
    hist = History.from_views(
        videos[0][pick].tolist(), videos[1][pick].tolist(), [3000] * 20,
        list(range(1000, 21000, 1000)), cap=ranker.history_cap,
    )  # fmt: skip
    state = ranker.encode_user(5, hist)
    captured: list[dict[str, Any]] = []
    timed_run = ranker._timed_run

    def capture(graph: str, feeds: dict[str, Any]) -> Any:
        captured.append(dict(feeds))
        return timed_run(graph, feeds)

    ranker._timed_run = capture  # type: ignore[method-assign]

    def run_single(runs: list[dict[str, Any]]) -> list[Any]:
        return [single.run(outputs, f) for f in runs]

    def run_split(runs: list[dict[str, Any]]) -> list[Any]:
        side = dict(
            zip(crossing, user.run(crossing, {k: runs[0][k] for k in USER_INPUTS}), strict=True)
        )
        return [video.run(outputs, {k: side.get(k, f.get(k)) for k in video_inputs}) for f in runs]

    for c in (100, 500):
        requests = []
        for _ in range(20):
            captured.clear()
            pick = rng.choice(len(videos[0]), c, replace=False)
            ranker.score(5, state, videos[0][pick], videos[1][pick], Timings())
            requests.append(list(captured))
        diff = max(
            float(np.abs(x[0] - y[0]).max())
            for runs in requests
            for x, y in zip(run_single(runs), run_split(runs), strict=True)
        )
        t_single, t_split = [], []
        for _ in range(15):
            for runs in requests:
                t0 = time.perf_counter()
                run_single(runs)
                t1 = time.perf_counter()
                run_split(runs)
                t_split.append(time.perf_counter() - t1)
                t_single.append(t1 - t0)
        ratio = np.array(t_split) / np.array(t_single)
        sys.stdout.write(
            f"C = {c}: max abs difference {diff}; single graph {np.median(t_single) * 1e3:.2f} ms, "
            f"split {np.median(t_split) * 1e3:.2f} ms, split / single {ratio.mean():.3f} +- "
            f"{ratio.std(ddof=1) / len(ratio) ** 0.5:.3f}\n"
        )


if __name__ == "__main__":
    main()
