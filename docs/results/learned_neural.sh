#!/usr/bin/env bash
# Neural learned baselines din-slot and sasrec (issue 13): every split and seed of the
# "Neural baselines" section of docs/results/learned-baselines.md.
# Usage: bash docs/results/learned_neural.sh SPLIT [SEEDS...]   (from the project root)
# Writes RESULTS/SPLIT-sSEED/learned-neural.{json,parquet,txt} (RESULTS defaults to /work/results).
set -euo pipefail
split=${1:?split: temporal or random_per_user}
shift
seeds=("${@:-0 1 2}")
log=${LOG:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
results=${RESULTS:-/work/results}
for seed in ${seeds[@]}; do
    out="$results/$split-s$seed"
    mkdir -p "$out"
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint baselines --data "$log" --format kuairand \
        --split "$split" --seed "$seed" --learned din-slot,sasrec --threads 1 \
        --json "$out/learned-neural.json" --predictions "$out/learned-neural.parquet" \
        > "$out/learned-neural.txt"
    echo "$split seed $seed: $out"
done
