#!/usr/bin/env bash
# Paired comparisons of the neural learned baselines (docs/results/learned-baselines.md), after
# docs/results/learned_neural.sh SPLIT and docs/results/learned_baselines_compare.sh SPLIT
# (which writes RESULTS/SPLIT-sSEED/gbdt-with-segint.parquet) for seeds 0 1 2.
# Usage: bash docs/results/learned_neural_compare.sh SPLIT
set -euo pipefail
split=${1:?split}
R=${RESULTS:-/work/results}
files=()
for seed in 0 1 2; do
    d="$R/$split-s$seed"
    .venv/bin/python -m learned.merge "$d/neural-with-all.parquet" "$d/learned-neural.parquet" \
        "$d/gbdt-with-segint.parquet"
    files+=("$d/neural-with-all.parquet")
done
mkdir -p "$R/compare"
pairs=("din-slot:SegInterest" "sasrec:SegInterest" "din-slot:ItemPosition+prior|N"
    "sasrec:ItemPosition+prior|N" "din-slot:AllPosition|N" "sasrec:AllPosition|N"
    "sasrec:din-slot" "din-slot:hazard-gbdt" "sasrec:hazard-gbdt")
for pair in "${pairs[@]}"; do
    a=${pair%%:*}
    b=${pair#*:}
    for cold in "" --cold; do
        tag="$split-$a-vs-${b//[|+]/_}${cold:+-cold}"
        OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint compare "${files[@]}" "$a" "$b" $cold \
            --no-progress --json "$R/compare/$tag.json" > "$R/compare/$tag.txt"
    done
done
echo "wrote $R/compare/$split-{din-slot,sasrec}-vs-*"
