"""Zero-downtime model swap: flip the artifact symlink under load, to a good then a bad one."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from service.swap import load_ranker
from tests.service.live import uvicorn_server


def _point(link: Path, target: Path) -> None:
    """Atomically repoint ``link`` (what `ln -sfn` + `mv -T` do)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _wait_for(predicate: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_swapping_under_load_to_a_good_then_a_bad_artifact_fails_no_request(
    self_artifact: Path, ctr_artifact: Path, tmp_path: Path
) -> None:
    """Two clients score and post views without pause while the link moves to another model
    (swapped: later answers name it, never the old one again) and then to a broken copy
    (refused: the new model keeps answering). Not one request fails."""
    bad = tmp_path / "broken"
    shutil.copytree(ctr_artifact, bad)
    for graph in bad.glob("*.onnx"):
        graph.write_bytes(graph.read_bytes()[:100])  # a torn upload
    link = tmp_path / "current"
    _point(link, self_artifact)
    env = {"SEGINT_ARTIFACT_DIR": str(link), "SEGINT_MODEL_WATCH_S": "0.2"}
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[], []]

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                user = 700 + worker * 1000 + i % 50
                score = {"user_id": user, "candidates": [{"video_id": 1001, "duration_ms": 9000}]}
                r = http.post("/score", json=score)
                seen[worker].append((r.status_code, r.json().get("model_version", r.text)))
                if i % 5 == 0:
                    view = {
                        "user_id": user,
                        "video_id": 1002,
                        "duration_ms": 9000,
                        "play_time_ms": 3000,
                        "time_ms": i,
                    }
                    seen[worker].append((http.post("/events/view", json=view).status_code, ""))

    with uvicorn_server(env, tmp_path) as server:
        workers = [threading.Thread(target=load, args=(w,)) for w in range(2)]
        for w in workers:
            w.start()
        try:
            time.sleep(1.0)
            _point(link, ctr_artifact)
            _wait_for(lambda: _version(server.url) == "tiny-self-ctr")
            time.sleep(1.0)
            _point(link, bad)
            _wait_for(
                lambda: 'segint_model_swaps_total{result="refused"} 1.0' in _metrics(server.url)
            )
            time.sleep(1.0)
        finally:
            stop.set()
            for w in workers:
                w.join()
        assert _version(server.url) == "tiny-self-ctr"
        metrics = _metrics(server.url)
        assert 'segint_model_swaps_total{result="swapped"} 1.0' in metrics
        log = server.log_text()
    assert "refused artifact" in log and "Traceback" not in log, log
    print(f"swap under load: {[len(a) for a in seen]} requests per client, none failed")
    for answers in seen:
        assert len(answers) > 20
        failed = [a for a in answers if a[0] != 200]
        assert not failed, failed[:5]
        versions = [v for _, v in answers if v]
        assert set(versions) == {"tiny-self", "tiny-self-ctr"}, set(versions)
        first_new = versions.index("tiny-self-ctr")
        assert set(versions[first_new:]) == {"tiny-self-ctr"}  # never back to the old one
        assert len(versions) - first_new > 5  # the new model served on through the bad swap


def _version(url: str) -> str:
    return str(httpx.get(f"{url}/healthz").json()["model_version"])


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics").text


@pytest.mark.parametrize("ragged", [True, False])
def test_a_loaded_ranker_follows_the_settings_at_start_and_on_swap(
    make_settings: Callable[..., Settings], self_artifact: Path, ragged: bool
) -> None:
    """Start-up and the swapper load through one function: `SEGINT_RAGGED_SCORING` holds for a
    swapped-in model too."""
    ranker = load_ranker(self_artifact, make_settings(ragged_scoring=ragged))
    assert ranker.ragged_enabled is ragged
