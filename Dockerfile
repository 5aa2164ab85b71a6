# segint images, built from one multi-stage file:
#
#   docker build -t segint-serve .                       # serving image, CPU ONNX Runtime (default)
#   docker build -t segint-serve:gpu --build-arg ORT=gpu .   # serving image, CUDA ONNX Runtime
#   docker build -t segint-train --target train .         # offline jobs: train + export (torch, CPU)
#   docker run --rm -v "$PWD/artifacts:/artifacts" segint-train   # -> artifacts/default
#
# Only what Docker 20.10's built-in Dockerfile frontend parses (no `# syntax=` line, which
# needs a registry pull, and no heredocs); BuildKit cache mounts need DOCKER_BUILDKIT=1.
# PYTHON_IMAGE is the upstream image, or the Debian stand-in deploy/images.sh builds offline.
#
# The serving image has no torch: it installs the `serve-cpu` extra (onnxruntime) or the
# `serve` extra (onnxruntime-gpu with its CUDA/cuDNN wheels), never both, because the two
# ONNX Runtime wheels overwrite each other's files. Dependencies are installed before the
# code is copied so that editing code does not re-download them.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# base: Python, a non-root user and the environment every stage shares.
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 segint \
    && useradd --system --uid 10001 --gid segint --home-dir /app --shell /usr/sbin/nologin segint
WORKDIR /app

# ---------------------------------------------------------------------------------------------
# deps: writes requirements for an extra from pyproject.toml (no lock file exists yet; when one
# does, copy it here instead). Only pyproject.toml and the script are copied, so this layer is cached until the
# dependency lists change.
FROM base AS deps
COPY pyproject.toml deploy/requirements.py /src/
RUN python /src/requirements.py /src/pyproject.toml /src

# ---------------------------------------------------------------------------------------------
# serve-build: a virtualenv with the serving dependencies and segint itself (no torch).
FROM deps AS serve-build
# cpu -> onnxruntime (extra serve-cpu); gpu -> onnxruntime-gpu[cuda,cudnn] (extra serve).
ARG ORT=cpu
# The checks at the end fail the build if torch or the other ONNX Runtime slipped in through a
# transitive dependency (`! cmd` would not: `set -e` ignores negated commands).
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    case "$ORT" in \
      cpu) reqs=/src/requirements-serve-cpu.txt; extra=""; other=onnxruntime-gpu ;; \
      gpu) reqs=/src/requirements-serve.txt; extra="onnxruntime-gpu[cuda,cudnn]"; other=onnxruntime ;; \
      *) echo "build arg ORT must be cpu or gpu, got '$ORT'" >&2; exit 2 ;; \
    esac; \
    python -m venv "$VIRTUAL_ENV"; \
    pip install -r "$reqs" ${extra:+"$extra"}; \
    for pkg in torch "$other"; do \
      if pip show "$pkg" >/dev/null 2>&1; then echo "$pkg must not be in the serving image" >&2; exit 1; fi; \
    done
# The whole context (trimmed by .dockerignore), so every package pyproject.toml declares is
# there; only the virtualenv reaches the serve stage. --no-deps: the dependencies are already
# in place, this adds segint's own packages.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps /src
# The scorer's video-block kernel (service/kernels, an ONNX Runtime custom operator): g++ and
# ONNX Runtime's API headers (fetched from Debian by the build) stay in this stage; only the
# library goes on with the virtualenv. The service uses it on CPUs with AVX-512F or AVX2 + FMA
# (SEGINT_SCORER_KERNEL=auto) and serves the exported graph elsewhere.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "g++=4:12.2.0-3" \
    && rm -rf /var/lib/apt/lists/* \
    && python -m service.kernels build --out /tmp/kernels/segint_ops.so \
    && if [ -f /tmp/kernels/segint_ops.so ]; then cp /tmp/kernels/segint_ops.so "$VIRTUAL_ENV/lib/"; \
       else echo "no kernel library: the image serves the exported graph" >&2; fi

# ---------------------------------------------------------------------------------------------
# train: offline jobs (train a model, export it to ONNX into a mounted volume). torch is the
# pinned CPU wheel from the PyTorch CPU index so the image never pulls a multi-GB CUDA build.
# The CPU onnxruntime (extra export-cpu): the export quantises the scorer to int8 with it.
FROM deps AS train
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv "$VIRTUAL_ENV" \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install -r /src/requirements-train.txt -r /src/requirements-export-cpu.txt
# Owned by the job's user: training may write next to the code (runs/, caches).
COPY --chown=10001:10001 . /app
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps /app \
    && mkdir -p /artifacts \
    && chown 10001:10001 /artifacts
USER 10001:10001
# The default job trains on the bundled log and exports to /artifacts/$MODEL_VERSION (mount a
# volume there; the serving containers mount the same volume read-only). Any other command
# runs instead, e.g. `docker run segint-train segint evaluate ...`.
ENV ARTIFACT_ROOT=/artifacts MODEL_VERSION=default
VOLUME ["/artifacts"]
CMD ["bash", "deploy/train-export.sh"]

# ---------------------------------------------------------------------------------------------
# serve: the runtime image. Last stage, so a plain `docker build .` produces it.
FROM base AS serve
# onnxruntime-gpu finds the driver through the NVIDIA container toolkit; harmless on CPU.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SEGINT_ARTIFACT_DIR=/artifacts/default \
    SEGINT_KERNEL_LIBRARY=/opt/venv/lib/segint_ops.so
COPY --from=serve-build /opt/venv /opt/venv
# The outage journal's mount point (SEGINT_JOURNAL_PATH): a new named volume mounted here
# takes this directory's owner, so the non-root service can write it.
RUN mkdir -p /journal && chown 10001:10001 /journal
USER 10001:10001
EXPOSE 8000
# The image has no curl; the standard library is enough for a health probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# One worker per container (scale with replicas): the Prometheus registry is per process.
# Access logs are off because every request is already counted in /metrics.
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "1", "--no-access-log", "--timeout-graceful-shutdown", "20"]
