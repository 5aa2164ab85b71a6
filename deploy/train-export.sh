#!/usr/bin/env bash
# The offline job of the training image (Dockerfile target `train`, compose profile `train`,
# deploy/k8s/train-job.yaml): train on a KuaiRand log and export the ONNX artifact that the
# serving replicas load. Extra arguments go to `segint train` (e.g. --set optim.max_epochs=2).
#
#   TRAIN_DATA     the log to train on   (default: the slice bundled in data/kuairand_pure/)
#   ARTIFACT_ROOT  where artifacts live  (default /artifacts)
#   MODEL_VERSION  the artifact's folder and cache-key version (default "default")
set -euo pipefail
data=${TRAIN_DATA:-data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv.gz}
out=${ARTIFACT_ROOT:-/artifacts}/${MODEL_VERSION:-default}
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
segint train --data "$data" --format kuairand --out "$run/run" --no-progress "$@"
# --force: re-running the job replaces the artifact of the same version.
segint export --model "$run/run" --out "$out" --force
echo "train-export: wrote $out"
