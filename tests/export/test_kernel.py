"""The scorer's video-block kernel: `export.kernel` (scorer.kernel.onnx, the torch reference of
segint::video_block) and `service.kernels` (the ONNX Runtime custom operator), against the
exported scorer: same outputs on every real slot, in PyTorch and through the ranker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from export.contract import KERNEL, KERNEL_FILES, SCORER
from export.fused import fused_copy
from export.kernel import kernel_copy, kernel_unfit
from export.manifest import Manifest
from model.config import ModelConfig
from model.network import SegmentInterestModel
from service import kernels
from service.ranker import KERNEL_RUN_OVERHEAD_SLOTS, RUN_OVERHEAD_SLOTS, Ranker, Scores
from tests.export.test_onnx import user_inputs
from tests.export.tiny import TINY, USERS, VIDEOS, write_run
from tests.service.test_ragged import durations, history

S = 9
# The kernel's dimensions (d 32, 4 heads, FFN 64) on the tiny model's other settings.
KERNEL_TINY = TINY | {"s_max": S, "d_model": 32, "n_heads": 4, "ffn_dim": 64}


def kernel_model(seed: int = 0) -> SegmentInterestModel:
    """Random weights (smaller than tiny_model's, so that the deferred softmax applies: the
    attention logits are bounded by 44.8), random exit counts and side codes."""
    cfg = ModelConfig(n_users=len(USERS), n_videos=len(VIDEOS), **KERNEL_TINY)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    model = SegmentInterestModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)  # LayerNorm gains: the logit bound grows with them
            else:
                p.normal_(0.0, 0.1 if p.dim() == 2 else 0.4)
        model.decoder.set_exit_counts(
            torch.randint(0, 4, (len(VIDEOS), S)).float(), torch.randint(0, 9, (S + 1, S)).float()
        )
        sizes_v, sizes_u = torch.tensor(cfg.video_side_sizes), torch.tensor(cfg.user_side_sizes)
        model.set_side_features(
            (torch.rand(len(VIDEOS), len(sizes_v)) * sizes_v).long(),
            (torch.rand(len(USERS), len(sizes_u)) * sizes_u).long(),
        )
    return model.eval()


@pytest.fixture(scope="module")
def kernel_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.onnx import export_run

    folder = tmp_path_factory.mktemp("kernel")
    run = write_run(folder / "run", kernel_model())
    export_run(run, folder / "artifact", version="tiny-kernel")
    return folder / "artifact"


CASES = {
    "odd_mix": [3, 1, 7, 2, 6, 2, 5, 1, 4, 9, 8],
    "single": [4],
    "single_full": [S],
    "all_one": [1] * 5,
    "thousand": np.random.default_rng(0).integers(1, S + 1, 1000).tolist(),
}


def test_the_tiny_kernel_model_fits_and_the_others_say_why_not() -> None:
    from tests.export.tiny import tiny_model

    assert kernel_unfit(kernel_model()) is None
    assert "d 12, 3 heads, FFN 20" in str(kernel_unfit(tiny_model("self")))
    assert "cross stream" in str(kernel_unfit(tiny_model("cross")))


@pytest.mark.parametrize("case", CASES)
def test_the_kernel_form_scores_what_the_exported_form_scores_in_pytorch(case: str) -> None:
    """segint::video_block's PyTorch implementation, from the flat weights (`KERNEL_LAYOUT`),
    against the exported form's blocks, ragged (T = the widest N + 1)."""
    model = kernel_model()
    served, kernel = fused_copy(model), kernel_copy(model)
    n = torch.tensor(CASES[case])
    vids = torch.randint(0, len(VIDEOS), (len(n),), generator=torch.Generator().manual_seed(1))
    t = torch.arange(min(int(n.max()) + 1, S))
    with torch.no_grad():
        states, mask = model.encode_user(**user_inputs(1, 4, seed=2))  # one user, 4 views
        want = served.score(states, mask, vids, n, slot_index=t)
        got = kernel.score(states, mask, vids, n, slot_index=t)
    for i, k in enumerate(n.tolist()):
        m = min(k + 1, S)
        torch.testing.assert_close(got[i, :m], want[i, :m], atol=1e-5, rtol=1e-5)


def test_export_lists_the_kernel_scorer_only_for_models_it_fits(
    kernel_artifact: Path, self_artifact: Path
) -> None:
    manifest = Manifest.read(kernel_artifact)
    spec = manifest.variant(SCORER, KERNEL)
    assert spec is not None and spec.file == KERNEL_FILES[SCORER]
    assert (kernel_artifact / spec.file).is_file()
    raw = json.loads((kernel_artifact / "manifest.json").read_text())
    assert set(raw["precisions"]) == {"int8", KERNEL}
    assert Manifest.read(self_artifact).variant(SCORER, KERNEL) is None  # d 12: no kernel form


def test_the_library_is_built_and_runs_on_this_cpu() -> None:
    """`make test` builds it (`make kernels`); every machine the suite runs on has AVX2 + FMA
    at least (x86-64 since 2013-2015)."""
    assert kernels.cpu_supported(), "this CPU has neither AVX-512F nor AVX2 + FMA"
    assert kernels.library() is not None, f"{kernels.LIBRARY} is not built: run `make kernels`"


def test_the_kernel_builds_this_cpu_runs_are_read_from_its_flags() -> None:
    assert kernels.cpu_isas("fpu sse2 avx avx2 fma avx512f avx512bw") == ["avx512", "avx2"]
    assert kernels.cpu_isas("fpu sse2 avx avx2 fma bmi2") == ["avx2"]
    assert kernels.cpu_isas("fpu sse2 avx avx2") == []  # AVX2 without FMA
    assert kernels.cpu_isas("fpu sse2 avx512fp16") == []  # a word, not a prefix


# Each kernel build this CPU runs (`SEGINT_KERNEL_ISA`): AVX2's everywhere, AVX-512's too where
# the CPU has it.
ISAS = kernels.cpu_isas()


def _scores(ranker: Ranker, n: list[int]) -> Scores:
    state = ranker.encode_user(103, history())
    vids = np.random.default_rng(len(n)).integers(998, 1030, len(n))  # some unknown ids
    return ranker.score(103, state, vids, durations(n))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CASES)
def test_the_kernel_scorer_answers_as_the_exported_scorer(
    kernel_artifact: Path, case: str, isa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ONNX Runtime and the ranker (ragged runs): every head of every candidate, with
    each build of the kernel this CPU runs."""
    monkeypatch.setenv(kernels.ISA_ENV, isa)
    assert kernels.isa() == isa
    kernel = Ranker.load(kernel_artifact, provider="cpu")
    graph = Ranker.load(kernel_artifact, provider="cpu", kernel="off")
    assert kernel.kernel and not graph.kernel
    assert kernel.heads is not None and graph.heads is None  # compiled heads against numpy's
    assert (kernel.run_overhead, graph.run_overhead) == (
        KERNEL_RUN_OVERHEAD_SLOTS,
        RUN_OVERHEAD_SLOTS,
    )
    n = CASES[case]
    got, want = _scores(kernel, n), _scores(graph, n)
    for i, k in enumerate(n):
        m = min(k + 1, S)
        np.testing.assert_allclose(got.logits[i, :m], want.logits[i, :m], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got.exit_distribution, want.exit_distribution, atol=1e-6)
    np.testing.assert_allclose(got.expected_watch_ms, want.expected_watch_ms, rtol=1e-6)
    np.testing.assert_allclose(got.completion_probability, want.completion_probability, atol=1e-6)
    np.testing.assert_array_equal(got.predicted_exit_slot, want.predicted_exit_slot)
    kernel.ragged_enabled = graph.ragged_enabled = False  # one padded run of S slots
    got, want = _scores(kernel, n), _scores(graph, n)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=1e-5)


def _video_block_session(library: Path, folder: Path) -> object:
    """One ``segint.VideoBlock`` node as a graph of its own, opened as the ranker opens the
    kernel scorer (`service.ranker._open_session`: same options, same library registration)."""
    import onnx
    from onnx import TensorProto, helper

    from export.contract import KERNEL_OP, KERNEL_OP_DOMAIN
    from service.ranker import _open_session

    names = ("x", "nkeys", "user_keys", "user_values", "weights")
    types = (TensorProto.FLOAT, TensorProto.INT64, *[TensorProto.FLOAT] * 3)
    graph = helper.make_graph(
        [helper.make_node(KERNEL_OP, list(names), ["y"], domain=KERNEL_OP_DOMAIN)],
        "video_block",
        [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types, strict=True)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid(KERNEL_OP_DOMAIN, 1)],
        ir_version=10,
    )
    path = folder / "video_block.onnx"
    onnx.save(model, path)
    return _open_session(path, cuda=False, threads=1, spinning=True, custom_ops=library)


@pytest.mark.parametrize("isa", ISAS)
def test_the_operator_computes_each_candidates_own_rows_and_zeros_the_rest(
    isa: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``segint.VideoBlock`` against ``segint::video_block`` (PyTorch, the flat weights of a
    real block) on every row: rows up to a candidate's ``nkeys`` (its keys and its completion
    slot) within 1e-5, the rows past them exactly zero in both, for valid-key counts from 1 to
    T (T = 40, the kernel's widest) and user token counts 1 and 22."""
    from export.kernel import block_weights, video_block

    monkeypatch.setenv(kernels.ISA_ENV, isa)
    lib = kernels.library()
    assert lib is not None, f"{kernels.LIBRARY} is not built: run `make kernels`"
    session = _video_block_session(lib, tmp_path)
    block = kernel_copy(kernel_model()).encoders["id"].video[0]  # type: ignore[index]
    w = block_weights(block)
    gen = torch.Generator().manual_seed(3)
    for c, t, m in ((37, 40, 22), (5, 9, 1), (1, 1, 3), (64, 17, 22)):
        x = torch.randn(c, t, 32, generator=gen)
        nkeys = torch.randint(1, t + 1, (c,), generator=gen)
        nkeys[0] = t  # a candidate whose every row is a key
        uk = torch.randn(4, 8, m, generator=gen) * 0.3
        uv1t = torch.cat([torch.randn(4, 8, m, generator=gen), torch.ones(4, 1, m)], dim=1)
        want = video_block(x, nkeys, uk, uv1t, w).numpy()
        feeds = {
            "x": x.numpy(),
            "nkeys": nkeys.numpy(),
            "user_keys": uk.numpy(),
            "user_values": uv1t.numpy(),
            "weights": w.numpy(),
        }
        got = session.run(["y"], feeds)[0]  # type: ignore[attr-defined]
        rows = np.arange(t)[None] <= nkeys.numpy()[:, None]  # (C, T): the rows it computes
        np.testing.assert_allclose(got[rows], want[rows], atol=1e-5, rtol=1e-5)
        assert not got[~rows].any() and not want[~rows].any()


def test_without_a_usable_library_the_exported_scorer_is_served(
    kernel_artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing library, or a file ONNX Runtime cannot load as one: the exported scorer,
    the same answers, and a log line saying why."""
    want = _scores(Ranker.load(kernel_artifact, provider="cpu", kernel="off"), CASES["odd_mix"])
    broken = tmp_path / "broken.so"
    broken.write_text("not a library")
    for library in (tmp_path / "missing.so", broken):
        with caplog.at_level(logging.INFO, logger="service.ranker"):
            ranker = Ranker.load(kernel_artifact, provider="cpu", kernel_library=library)
        assert not ranker.kernel
        assert "scorer.kernel.onnx not used" in caplog.text
        caplog.clear()
        got = _scores(ranker, CASES["odd_mix"])
        np.testing.assert_array_equal(got.logits, want.logits)


def test_a_kernel_build_this_cpu_cannot_run_serves_the_exported_scorer(
    kernel_artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SEGINT_KERNEL_ISA naming no build (or one this CPU lacks): the library's registration
    fails with the reason and the ranker serves the exported scorer, the same answers."""
    from service.ranker import _open_session

    want = _scores(Ranker.load(kernel_artifact, provider="cpu", kernel="off"), CASES["odd_mix"])
    monkeypatch.setenv(kernels.ISA_ENV, "sse2")
    assert kernels.isa() is None
    with caplog.at_level(logging.INFO, logger="service.ranker"):
        ranker = Ranker.load(kernel_artifact, provider="cpu")
    assert not ranker.kernel and "scorer.kernel.onnx not used" in caplog.text
    np.testing.assert_array_equal(_scores(ranker, CASES["odd_mix"]).logits, want.logits)
    # the library itself refuses too (the ranker's check aside), naming the setting
    with pytest.raises(Exception, match="SEGINT_KERNEL_ISA=sse2, not one of"):
        _open_session(
            kernel_artifact / KERNEL_FILES[SCORER], False, 1, False, custom_ops=kernels.LIBRARY
        )


def test_an_unknown_kernel_setting_is_refused(kernel_artifact: Path) -> None:
    with pytest.raises(ValueError, match="kernel 'fast'"):
        Ranker.load(kernel_artifact, provider="cpu", kernel="fast")


def test_healthz_says_whether_the_kernel_serves(kernel_artifact: Path) -> None:
    """SEGINT_SCORER_KERNEL auto serves it (fp32 on CPU), off and the int8 scorer do not; the
    answers of /score agree."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    body = {"user_id": 103, "candidates": [{"video_id": 1004 + i, "duration_ms": 5000 * i - 1700}
                                           for i in range(1, S + 1)]}  # fmt: skip
    answers = {}
    for kernel, precision, served in (("auto", "fp32", True), ("off", "fp32", False),
                                      ("auto", "int8", False)):  # fmt: skip
        settings = Settings(
            artifact_dir=kernel_artifact, intra_op_threads=1, scorer_precision=precision,
            scorer_kernel=kernel, gc_freeze=False, redis_url=None, api_key=None,
        )  # type: ignore[arg-type]  # fmt: skip
        with TestClient(create_app(settings)) as c:
            health = c.get("/healthz").json()
            assert (health["scorer_kernel"], health["scorer_precision"]) == (served, precision)
            assert health["response_heads"] == ("compiled" if kernel == "auto" else "numpy")
            r = c.post("/score", json=body | {"include": ["segment_scores"]})
            assert r.status_code == 200, r.text
            answers[kernel, precision] = [c["segment_scores"] for c in r.json()["candidates"]]
    for got, want in zip(answers["auto", "fp32"], answers["off", "fp32"], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_bench_before_artifact_has_no_kernel_scorer(
    kernel_artifact: Path, tmp_path: Path
) -> None:
    """The bench's `before` server serves the round-1 graph: its artifact copy must not list
    the kernel scorer, which the service would serve instead."""
    from bench.bench_service import before_artifact

    before = before_artifact(kernel_artifact, kernel_model(), cache=tmp_path)
    assert Manifest.read(before).variant(SCORER, KERNEL) is None
    assert not (before / KERNEL_FILES[SCORER]).exists()
    assert not Ranker.load(before, provider="cpu").kernel


def test_loading_the_library_leaves_the_floating_point_mode_alone() -> None:
    """Linked with -ffast-math, GCC 12 adds crtfastmath.o to a shared library: loading it turns
    on flush-to-zero and denormals-are-zero for the loading thread and every thread it starts
    (each later numpy result). The library is compiled with it and linked without it."""
    import subprocess
    import sys

    lib = kernels.library()
    assert lib is not None, f"{kernels.LIBRARY} is not built: run `make kernels`"
    code = (
        "import ctypes, sys, numpy as np\n"
        "tiny = np.float32(1e-39)  # a float32 denormal\n"
        "before = float(tiny * np.float32(1.0))\n"
        "ctypes.CDLL(sys.argv[1])\n"
        "print(before > 0, float(tiny * np.float32(1.0)) > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(lib)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


def test_a_build_that_fails_says_why_in_one_line(tmp_path: Path) -> None:
    """`python -m service.kernels build` with a compiler that fails: exit 0 (the exported
    graph is served), one line naming the failure, no library, no traceback."""
    import os
    import shutil
    import subprocess
    import sys

    headers = kernels.LIBRARY.parent / "onnxruntime-headers"
    shutil.copytree(headers, tmp_path / "onnxruntime-headers")  # no download here
    out = tmp_path / "segint_ops.so"
    proc = subprocess.run(
        [sys.executable, "-m", "service.kernels", "build", "--out", str(out)],
        capture_output=True,
        text=True,
        env=os.environ | {"CXX": "/bin/false"},
        cwd=kernels.ROOT,
    )
    assert proc.returncode == 0 and not out.exists()
    assert proc.stderr.startswith("segint kernels: not built (") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_package_ships_every_source_the_build_reads() -> None:
    """The serving image builds the library from the installed package (`pip install`), so
    its package data must hold every C++ source and header of service/kernels (a header left
    out made the image's build fail and serve the exported graph)."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((kernels.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service.kernels"]
    sources = [p.name for p in kernels.HERE.iterdir() if p.suffix in (".cpp", ".h")]
    assert {"video_block.h", "video_block.cpp", "custom_op.cpp"} <= set(sources)
    missing = [s for s in sources if not any(fnmatch.fnmatch(s, p) for p in patterns)]
    assert not missing, f"pyproject.toml's package data lacks {missing}"
