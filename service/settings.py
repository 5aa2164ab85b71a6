"""Service settings: one pydantic-settings class read from ``SEGINT_*`` environment variables.

``get_settings()`` is cached so the app factory and the dependencies share one instance; tests
build ``Settings(...)`` directly and pass it to ``create_app``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _cpu_count() -> int:
    # ORT sizes its pool from the host's cores, not the cgroup/affinity set (SERVING-NOTES 2.2).
    return max(1, len(os.sched_getaffinity(0)))


class Settings(BaseSettings):
    """Every knob of the scoring service; the environment variable is ``SEGINT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SEGINT_", extra="forbid", frozen=True)

    artifact_dir: Path = Field(
        default=Path("artifacts/default"),
        description="exported artifact (manifest.json + ONNX graphs)",
    )
    feature_store: Path | None = Field(
        default=None,
        description="segment feature store of a content model (segint.features); unset: none",
    )
    feature_l1: bool | None = Field(
        default=None,
        description="L1-normalise feature vectors on read; unset: as the model was trained",
    )
    # --- ONNX Runtime
    provider: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when a CUDA session really starts, else CPU"
    )
    intra_op_threads: int = Field(default_factory=_cpu_count, ge=1, le=256)
    inference_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="session runs in flight at once (more only oversubscribes)",
    )
    inference_queue_max: int = Field(
        default=32,
        ge=0,
        le=100_000,
        description="requests waiting for an inference slot; more are shed (503)",
    )
    request_deadline_ms: float = Field(
        default=1000.0,
        gt=0,
        description="a request predicted not to get an inference slot this long after it "
        "arrived is shed (503) at the door instead of queued; one admitted is shed only if it "
        "waits twice this. The default is a safety valve against a queue that only grows; "
        "set it to half to three quarters of the unloaded p99 to hold the accepted p99 within "
        "2-3x of it (docs/reliability.md)",
    )
    inference_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="Linux nice levels added to the threads that run the model, so the event "
        "loop (accepting, parsing, shedding) preempts inference on a busy core; 0: same "
        "priority (docs/reliability.md)",
    )
    gil_switch_interval_ms: float = Field(
        default=5.0,
        ge=0.1,
        le=100.0,
        description="sys.setswitchinterval: how long a thread may keep the GIL while another "
        "waits for it (Python's default is 5 ms); shorter gives the event loop the GIL back "
        "sooner after an inference thread took it (docs/reliability.md)",
    )
    loop_slice_us: float = Field(
        default=0.0,
        ge=0.0,
        le=100_000.0,
        description="scheduler slice requested for the event-loop thread (Linux 6.12+ EEVDF "
        "custom slice, clamped by the kernel to 100-100,000 us): a short one lets the loop "
        "preempt a running inference thread as soon as bytes arrive; 0: the kernel default "
        "(docs/reliability.md)",
    )
    loop_lag_in_deadline: bool = Field(
        default=False,
        description="start a request's deadline clock earlier by how late the event loop "
        "runs (the time its bytes waited unread), so a loop that falls behind sheds sooner",
    )
    ort_spinning: bool = Field(
        default=True, description="let ORT worker threads spin between runs (off on shared cores)"
    )
    scorer_precision: Literal["auto", "fp32", "int8"] = Field(
        default="fp32",
        description="the scorer's precision: fp32 (the exported graph), int8 (its dynamic int8 "
        "form, scorer.int8.onnx: weights int8, activations quantised per run; start-up fails "
        "on an artifact without it) or auto (int8 when the artifact has it and the scorer "
        "runs on CPU, else fp32). fp32 is the default: an int8 answer moves with the other "
        "candidates of its request. /healthz reports the one served (docs/serving.md)",
    )
    scorer_kernel: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: on CPU, an fp32 scorer runs its video blocks as the segint.VideoBlock "
        "custom operator (scorer.kernel.onnx) when the artifact has it and the library "
        "(`make install` builds it; SEGINT_KERNEL_LIBRARY) runs on this CPU, else the exported "
        "graph, and the response heads are computed in one compiled pass of that library; "
        "off: always the exported graph and numpy's heads. /healthz reports which "
        "(docs/serving.md)",
    )
    kernel_library: str | None = Field(
        default=None,
        description="the custom-operator library (default: build/kernels/segint_ops.so of the "
        "checkout, written by `make install`)",
    )
    ragged_scoring: bool = Field(
        default=True,
        description="score each candidate on its own slots only, in length buckets (off: one "
        "padded run over all s_max slots; same results, for comparison)",
    )
    # --- user-history cache
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db, or redis+cluster://host:port (any node of a Redis "
        "Cluster); unset: the in-process LRU is the cache",
    )
    redis_timeout_s: float = Field(
        default=0.05, gt=0, description="per Redis call (latency budget)"
    )
    redis_retry_after_s: float = Field(
        default=1.0, ge=0, description="after a Redis error, serve from the fallback this long"
    )
    key_prefix: str = Field(default="segint", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, description="TTL of a user blob in Redis")
    local_cache_size: int = Field(default=100_000, ge=1, description="users in the in-process LRU")
    local_cache_mb: float = Field(
        default=256.0,
        gt=0,
        description="bytes (MiB) of blobs and keys in the in-process LRU; evicts the least "
        "recently used past it (the default fits a 1 GiB container with the model loaded)",
    )
    pending_events_max: int = Field(
        default=100_000, ge=0, description="view events kept for replay while Redis is down"
    )
    journal_path: Path | None = Field(
        default=None,
        description="outage journal: view events acknowledged while Redis is down are "
        "fsync'd here before the 200 and replayed on start; unset: kept in memory only",
    )
    model_watch_s: float = Field(
        default=2.0,
        ge=0,
        description="how often to check whether artifact_dir (a symlink) points elsewhere, "
        "and swap in that artifact without downtime; 0: never",
    )
    # --- request limits (a violation is a 422 naming the field)
    max_candidates: int = Field(default=1000, ge=1)
    max_history: int = Field(
        default=1000, ge=0, description="views accepted in a request's history"
    )
    max_k: int = Field(default=20, ge=1, description="most thumbnail segments per request")
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # --- access and runtime
    api_key: SecretStr | None = Field(
        default=None, description="if set, POST /events/view needs X-API-Key"
    )
    gc_freeze: bool = Field(
        default=True, description="gc.freeze() after start-up and a higher gen-0 threshold"
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
