#!/usr/bin/env bash
# Learned baselines (issue 13): every split and seed of docs/results/learned-baselines.md.
# Usage: bash docs/results/learned_baselines.sh SPLIT [SEEDS...]   (from the project root)
# Writes /work/results/SPLIT-sSEED/learned-gbdt.{json,parquet} (RESULTS overrides /work/results).
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
        --split "$split" --seed "$seed" --learned hazard-gbdt,tpm,d2q --threads 1 \
        --json "$out/learned-gbdt.json" --predictions "$out/learned-gbdt.parquet" \
        > "$out/learned-gbdt.txt"
    echo "$split seed $seed: $out"
done
