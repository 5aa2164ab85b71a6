"""The scorer's served precision (``SEGINT_SCORER_PRECISION``: fp32, int8 or auto) on real ONNX
Runtime sessions of the tiny artifacts.

int8 is not parity. That the service runs the int8 file is checked exactly (its logits equal a
plain ONNX Runtime session of scorer.int8.onnx on the same feeds); closeness to fp32 only
loosely, relative to the fp32 logits' range on the real slots as in
`tests/export/test_rewrite.py`: on user states from the encoder (larger than that test's
random ones) the random tiny model (every weight drawn from N(0, 0.4)) quantises worse than a
trained one: over 4 seeds and 5 to 200 candidates the largest error measured 9% to 17% of the
range and the mean 4% (onnxruntime 1.31.1), about what another user's fp32 logits differ by,
so the bounds below (max 25%, mean 8%) catch a broken graph (NaN, wrong slots, garbage), not a
subtle one. The quality that matters, NDCG@5 on real rows, is bench/bench_precision.py's
(docs/serving.md, "Round 5: served precision").
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from export.manifest import ArtifactError, Manifest
from service.app import create_app
from service.cache import LocalStore, UserCache, namespace
from service.deps import AppState
from service.ranker import Ranker, Scores, _open_session
from service.settings import Settings
from service.swap import ModelSwapper, load_ranker
from service.users import UserStates
from tests.service.reference import score_body
from tests.service.test_ragged import durations, history

S = 7
MAX_ERR, MEAN_ERR = 0.25, 0.08  # of the fp32 logits' range on the real slots (see above)


def candidates(c: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Video ids (known 1000..1027 and two unknown) and N = 1..S for ``c`` candidates."""
    rng = np.random.default_rng(seed)
    return rng.integers(1000, 1030, c), rng.integers(1, S + 1, c)


def run(ranker: Ranker, vids: np.ndarray, n: np.ndarray) -> Scores:
    return ranker.score(103, ranker.encode_user(103, history()), vids, durations(n))


def real_slots(n: np.ndarray) -> np.ndarray:
    """(C, S): the outcomes 0..N a candidate can have (slot S - 1 stands for N = S)."""
    return np.arange(S)[None, :] <= np.minimum(n, S - 1)[:, None]


def assert_close_to_fp32(got: np.ndarray, want: np.ndarray, real: np.ndarray) -> None:
    spread = float(np.ptp(want[real]))
    assert spread > 1.0  # logits that differ, so the bound means something
    err = np.abs(got[real] - want[real])
    assert np.isfinite(got[real]).all()
    assert err.max() <= MAX_ERR * spread and err.mean() <= MEAN_ERR * spread, (
        err.max() / spread,
        err.mean() / spread,
    )


def without_int8(artifact: Path, tmp: Path) -> Path:
    """A copy of ``artifact`` as exported before the int8 form: no file, no manifest entry."""
    old = tmp / "no-int8"
    shutil.copytree(artifact, old)
    (old / "scorer.int8.onnx").unlink()
    dataclasses.replace(Manifest.read(old), precisions={}).write(old)
    return old


def test_int8_ranker_runs_the_int8_file(self_artifact: Path) -> None:
    """precision int8: a padded run's logits equal, bit for bit, a plain session of
    scorer.int8.onnx on the same feeds (and differ from fp32's)."""
    ranker = Ranker.load(self_artifact, provider="cpu", precision="int8")
    ranker.ragged_enabled = False
    vids, n = candidates(30, seed=3)
    user = ranker.encode_user(103, history())
    assert user.states is not None and user.mask is not None
    got = ranker.score(103, user, vids, durations(n)).logits
    feeds = {
        "user_states": user.states[None],
        "user_mask": user.mask[None],
        "video_ids": ranker.videos.lookup(vids),
        "n_segments": n.astype(np.int64),
        "slot_index": np.arange(S, dtype=np.int64),
    }
    plain = {
        p: _open_session(self_artifact / f, False, 1, True).run(None, feeds)[0]
        for p, f in (("int8", "scorer.int8.onnx"), ("fp32", "scorer.onnx"))
    }
    assert np.array_equal(got, plain["int8"])
    assert not np.array_equal(got, plain["fp32"])


def test_int8_ranker_scores_close_to_fp32(self_artifact: Path) -> None:
    """precision int8, ragged (every length bucket): logits within the bounds above of fp32's
    on the real slots, the impossible slots' constant untouched, same N and unknown flags; the
    user encoder is fp32 in both (equal user states)."""
    fp32 = Ranker.load(self_artifact, provider="cpu", precision="fp32")
    int8 = Ranker.load(self_artifact, provider="cpu", precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    vids, n = candidates()
    states = [r.encode_user(103, history()) for r in (fp32, int8)]
    assert states[0].states is not None and states[1].states is not None
    assert np.array_equal(states[0].states, states[1].states)
    want, got = run(fp32, vids, n), run(int8, vids, n)
    real = real_slots(n)
    assert not np.array_equal(got.logits, want.logits)
    assert_close_to_fp32(got.logits, want.logits, real)
    assert (got.logits[~real] == want.logits[~real]).all()
    np.testing.assert_array_equal(got.n_segments, want.n_segments)
    np.testing.assert_array_equal(got.video_unknown, want.video_unknown)


def test_fp32_answers_are_the_exported_graphs_bit_for_bit(
    make_settings: Callable[..., Settings], self_artifact: Path
) -> None:
    """SEGINT_SCORER_PRECISION=fp32 serves exactly what a ranker on sessions of the manifest's
    graph files serves (the service before the setting existed): equal logits and heads."""
    ranker = load_ranker(self_artifact, make_settings(scorer_precision="fp32"))
    m = Manifest.read(self_artifact)
    sessions = {
        g: _open_session(self_artifact / s.file, False, 1, True) for g, s in m.graphs.items()
    }
    # the same response heads (compiled where the library is built), so that the graph alone
    # differs: the compiled heads agree with numpy's within 1e-12 (test_compiled_heads.py)
    plain = Ranker(m, sessions, ranker.users, ranker.videos, heads=ranker.heads)
    vids, n = candidates(seed=1)
    got, want = run(ranker, vids, n), run(plain, vids, n)
    assert ranker.precision == "fp32"
    for f in ("logits", "exit_distribution", "expected_watch_ms", "median_watch_ms"):
        assert np.array_equal(getattr(got, f), getattr(want, f)), f


def test_app_serves_int8_close_to_fp32_and_healthz_says_which(
    make_settings: Callable[..., Settings],
) -> None:
    """/score of an int8 app: segment scores within the bound of the fp32 app's, same N;
    /healthz names the precision each serves."""
    vids, n = candidates(40, seed=2)
    body = score_body(101, list(zip(vids.tolist(), durations(n).tolist(), strict=True)))
    answers = {}
    for precision in ("fp32", "int8"):
        with TestClient(create_app(make_settings(scorer_precision=precision))) as c:
            assert c.get("/healthz").json()["scorer_precision"] == precision
            r = c.post("/score", json=body)
            assert r.status_code == 200, r.text
            answers[precision] = r.json()["candidates"]
    got = np.full((len(n), S), np.nan)
    want = np.full((len(n), S), np.nan)
    for i, (a, b) in enumerate(zip(answers["int8"], answers["fp32"], strict=True)):
        assert a["n_segments"] == b["n_segments"] == n[i]
        got[i, : n[i]], want[i, : n[i]] = a["segment_scores"], b["segment_scores"]
    assert_close_to_fp32(got, want, ~np.isnan(want))


def test_auto_serves_int8_on_cpu_when_the_artifact_has_it(
    make_settings: Callable[..., Settings],
    self_artifact: Path,
    cross_artifact: Path,
    tmp_path: Path,
) -> None:
    """auto: int8 when the artifact has scorer.int8.onnx and the scorer runs on CPU (also when
    CUDA was tried and did not start); fp32 for an artifact without one and for the cross
    stream (no scorer)."""
    auto = make_settings(scorer_precision="auto", provider="cpu")
    assert load_ranker(self_artifact, auto).precision == "int8"
    probed = load_ranker(self_artifact, make_settings(scorer_precision="auto", provider="auto"))
    assert probed.precision == ("fp32" if probed.provider == "CUDAExecutionProvider" else "int8")
    assert load_ranker(without_int8(self_artifact, tmp_path), auto).precision == "fp32"
    assert load_ranker(cross_artifact, auto).precision == "fp32"
    assert Settings.model_fields["scorer_precision"].default == "fp32"


def test_int8_on_an_artifact_without_it_fails_start_up_naming_the_setting(
    make_settings: Callable[..., Settings],
    self_artifact: Path,
    cross_artifact: Path,
    tmp_path: Path,
) -> None:
    """int8 asked of an artifact with no int8 scorer (exported before it, or cross stream):
    start-up fails with one message naming the setting and the file, not a silent fp32."""
    for artifact in (without_int8(self_artifact, tmp_path), cross_artifact):
        app = create_app(make_settings(artifact_dir=artifact, scorer_precision="int8"))
        with pytest.raises(ArtifactError) as e, TestClient(app):
            pass
        msg = str(e.value)
        assert "SEGINT_SCORER_PRECISION=int8" in msg and "scorer.int8.onnx" in msg
        assert "SEGINT_SCORER_PRECISION=fp32" in msg and len(msg.splitlines()) == 1


def test_a_listed_int8_file_must_be_there_with_its_sha256(
    self_artifact: Path, tmp_path: Path
) -> None:
    """The manifest lists scorer.int8.onnx with its sha256: a missing file, or one with other
    bytes, is an ArtifactError naming it (fp32 does not open it)."""
    gone = tmp_path / "gone"
    shutil.copytree(self_artifact, gone)
    (gone / "scorer.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"scorer\.int8\.onnx is listed in the manifest"):
        Ranker.load(gone, provider="cpu", precision="int8")
    assert Ranker.load(gone, provider="cpu", precision="fp32").precision == "fp32"
    other = tmp_path / "other"
    shutil.copytree(self_artifact, other)
    shutil.copy(other / "scorer.onnx", other / "scorer.int8.onnx")
    with pytest.raises(ArtifactError, match=r"scorer\.int8\.onnx: its sha256 differs"):
        Ranker.load(other, provider="cpu", precision="int8")


def test_a_bad_precision_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only auto, fp32 and int8: another value (argument or environment) is a validation
    error naming the setting and the allowed values."""
    with pytest.raises(ValidationError, match="scorer_precision"):
        Settings(scorer_precision="fp16")  # type: ignore[arg-type]
    monkeypatch.setenv("SEGINT_SCORER_PRECISION", "bf16")
    with pytest.raises(ValidationError) as e:
        Settings()
    assert "scorer_precision" in str(e.value) and "'auto', 'fp32' or 'int8'" in str(e.value)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        Ranker.load(Path("nowhere"), precision="fp16")


@pytest.mark.anyio
async def test_a_swap_keeps_the_precision_and_refuses_an_artifact_without_int8(
    make_settings: Callable[..., Settings],
    self_artifact: Path,
    ctr_artifact: Path,
    tmp_path: Path,
) -> None:
    """A model swap loads the new artifact in the configured precision (int8 again), and with
    int8 set refuses one without an int8 scorer: the serving int8 model stays."""
    settings = make_settings(scorer_precision="int8")
    ranker = load_ranker(self_artifact, settings)
    cache = UserCache(LocalStore(100), None, namespace=namespace("t", "tiny-self"))
    state = AppState(settings, ranker, cache, UserStates(ranker, cache))
    swapper = ModelSwapper(state, settings, self_artifact)
    assert await swapper.swap_to(ctr_artifact)
    assert state.ranker.manifest.model_version == "tiny-self-ctr"
    assert state.ranker.precision == "int8"
    assert not await swapper.swap_to(without_int8(self_artifact, tmp_path))
    assert state.ranker.manifest.model_version == "tiny-self-ctr"
    assert state.ranker.precision == "int8"
