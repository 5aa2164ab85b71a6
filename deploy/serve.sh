#!/usr/bin/env bash
# `make serve`: serve the scoring API on 0.0.0.0:8000, training and exporting a small model on
# the bundled data first when no artifact exists. Safe to re-run: an existing artifact is
# served as it is, and a finished training run is exported instead of trained again.
#
#   SEGINT_ARTIFACT_DIR  artifact to serve (default: artifacts/default, else the newest under
#                        artifacts/, else one trained and exported into artifacts/default)
#   SEGINT_REDIS_URL     Redis for the user-state cache (unset: in-process LRU)
#   SERVE_HOST, SERVE_PORT            default 0.0.0.0 and 8000
#   SERVE_DATA           training log (default: the bundled KuaiRand-Pure slice)
#   SERVE_RUN            training run folder (default: runs/default)
#   SERVE_TRAIN_SET      config overrides of the training run; the default (configs/base.yaml,
#                        at most two epochs, with its distillation teacher) takes about
#                        three minutes on 2 cores
#   SERVE_PREPARE_ONLY   1: stop once the artifact exists, serve nothing (`make stack-up`)
# Any other SEGINT_* variable configures the service (see service/settings.py).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${VENV:-.venv}/bin
data=${SERVE_DATA:-data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv.gz}
run=${SERVE_RUN:-runs/default}
train_set=${SERVE_TRAIN_SET:-optim.max_epochs=2}

artifact=${SEGINT_ARTIFACT_DIR:-}
if [[ -z $artifact ]]; then
  artifact=artifacts/default
  if [[ ! -f $artifact/manifest.json ]]; then
    newest=$(ls -t artifacts/*/manifest.json 2>/dev/null | head -n 1 || true)
    [[ -n $newest ]] && artifact=$(dirname "$newest")
  fi
fi

if [[ ! -f $artifact/manifest.json ]]; then
  if [[ ! -f $run/model.pt ]]; then
    if [[ ! -f $data ]]; then
      echo "serve: no artifact at $artifact and no training data at $data" >&2
      exit 2
    fi
    echo "serve: no artifact at $artifact; training a small model on $data (a few minutes)" >&2
    # Train into a scratch folder and move it into place only when training finished, so an
    # interrupted run is started over rather than exported half-trained.
    rm -rf "$run.partial"
    # shellcheck disable=SC2086  # train_set is a list of KEY=VALUE words
    "$bin/segint" train --data "$data" --format kuairand --split temporal \
      --config configs/base.yaml --set $train_set --out "$run.partial"
    rm -rf "$run"
    mv "$run.partial" "$run"
  fi
  echo "serve: exporting $run to $artifact" >&2
  "$bin/segint" export --model "$run" --out "$artifact"
fi

if [[ ${SERVE_PREPARE_ONLY:-0} == 1 ]]; then
  echo "serve: artifact ready at $artifact" >&2
  exit 0
fi
echo "serve: serving $artifact on ${SERVE_HOST:-0.0.0.0}:${SERVE_PORT:-8000}" \
  "(cache: ${SEGINT_REDIS_URL:-in-process})" >&2
export SEGINT_ARTIFACT_DIR=$artifact
exec "$bin/uvicorn" --factory service.app:create_app \
  --host "${SERVE_HOST:-0.0.0.0}" --port "${SERVE_PORT:-8000}"
