"""Prometheus metrics of the scoring service (module-level, one registry per process).

Naming follows the Prometheus conventions (base units, ``_total`` counters, an ``_info``
gauge for metadata) and never uses user or video ids as labels. Run one uvicorn worker per
container: several workers would each keep a private registry (SERVING-NOTES section 6).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets from 0.5 ms to 5 s: /score at C=100 costs tens of ms on 2 CPU cores.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

REQUEST_DURATION = Histogram(
    "segint_http_request_duration_seconds",
    "Wall time of an HTTP request, from the first byte received to the last byte sent.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "segint_http_requests_total",
    "HTTP requests answered, by route, method and status code.",
    ["route", "method", "status"],
)
INFERENCE_DURATION = Histogram(
    "segint_inference_duration_seconds",
    "ONNX Runtime time per request stage, by graph (user_encoder, scorer, model, ctr); a "
    "ragged scorer's bucket runs count as one stage.",
    ["graph"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_QUEUE_WAIT = Histogram(
    "segint_inference_queue_wait_seconds",
    "Time a request waited for a free inference slot (inference_concurrency).",
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "segint_batch_size",
    "Rows per request stage (candidates for the scorer and ctr, users for the user encoder).",
    ["graph"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
CACHE_REQUESTS = Counter(
    "segint_cache_requests_total",
    "User-state cache lookups by result: hit, miss, or error (the store failed).",
    ["result"],
)
CACHE_DURATION = Histogram(
    "segint_cache_duration_seconds",
    "Time spent in the user-state store, by operation (get, put, update).",
    ["op"],
    buckets=_LATENCY_BUCKETS,
)
FALLBACKS = Counter(
    "segint_fallback_total",
    "Requests served around a problem: redis_error, redis_skipped (circuit open), "
    "stale_blob (other model), corrupt_blob (bad header or checksum), event_dropped.",
    ["reason"],
)
REDIS_UP = Gauge("segint_redis_up", "1 when the last Redis call succeeded, 0 after an error.")
PENDING_EVENTS = Gauge(
    "segint_pending_events", "View events applied locally and waiting to be replayed into Redis."
)
MODEL_INFO = Gauge(
    "segint_model_info",
    "The loaded artifact (value 1): model version, execution provider, opset, user stream.",
    ["model_version", "provider", "opset", "user_stream"],
)
CONTENT_MISSING = Counter(
    "segint_content_missing_total",
    "Videos without any stored segment features (served with zero features), by input: "
    "candidate (video_content) or history (hist_content, one per history view).",
    ["input"],
)
LOOP_LAG = Histogram(
    "segint_event_loop_lag_seconds",
    "How late the event loop runs a 10 ms tick (observed at every tick): about how long a "
    "request's bytes wait unread before the service sees them.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SHED = Counter(
    "segint_shed_total",
    "Requests refused with 503 instead of queued: queue_full (the inference queue is full), "
    "deadline (it would not start in time), overrun (admitted, but not started by twice its "
    "deadline), outage_queue_full (too many view events pending), "
    "journal_error (the outage journal could not be written).",
    ["reason"],
)
JOURNAL_APPENDS = Counter(
    "segint_journal_appends_total",
    "View events written (fsync'd) to the outage journal while Redis was unavailable.",
)
MODEL_SWAPS = Counter(
    "segint_model_swaps_total",
    "Attempts to swap in a new artifact, by result: swapped, refused (load or warm-up failed).",
    ["result"],
)
LOCAL_CACHE_BYTES = Gauge(
    "segint_local_cache_bytes",
    "Bytes held by the in-process user-state LRU (SEGINT_LOCAL_CACHE_MB).",
)
