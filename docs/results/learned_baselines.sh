#!/usr/bin/env bash
# Learned baselines (issue 13): every split and seed of docs/results/learned-baselines.md.
# Usage: bash docs/results/learned_baselines.sh SPLIT [SEEDS...]   (from the project root)
# Writes RESULTS/SPLIT-sSEED/NAME.{json,parquet,txt} (RESULTS defaults to /work/results; NAME
# to learned-gbdt) for the learners in LEARNERS (default hazard-gbdt,tpm,d2q);
# docs/results/learned_neural.sh runs din-slot and sasrec through this script.
set -euo pipefail
split=${1:?split: temporal or random_per_user}
shift
seeds=("${@:-0 1 2}")
log=${LOG:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
results=${RESULTS:-/work/results}
learners=${LEARNERS:-hazard-gbdt,tpm,d2q}
name=${NAME:-learned-gbdt}
for seed in ${seeds[@]}; do
    out="$results/$split-s$seed"
    mkdir -p "$out"
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint baselines --data "$log" --format kuairand \
        --split "$split" --seed "$seed" --learned "$learners" --threads 1 \
        --json "$out/$name.json" --predictions "$out/$name.parquet" > "$out/$name.txt"
    echo "$split seed $seed: $out"
done
