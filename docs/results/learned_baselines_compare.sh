#!/usr/bin/env bash
# Paired comparisons of docs/results/learned-baselines.md (from the project root), after
# docs/results/learned_baselines.sh SPLIT and `segint evaluate --predictions` wrote
# RESULTS/SPLIT-sSEED/{learned-gbdt,segint}.parquet for seeds 0 1 2.
# Usage: bash docs/results/learned_baselines_compare.sh SPLIT
set -euo pipefail
split=${1:?split}
R=${RESULTS:-/work/results}
files=()
for seed in 0 1 2; do
    d="$R/$split-s$seed"
    .venv/bin/python -m learned.merge "$d/gbdt-with-segint.parquet" "$d/learned-gbdt.parquet" "$d/segint.parquet"
    files+=("$d/gbdt-with-segint.parquet")
done
mkdir -p "$R/compare"
for m in hazard-gbdt tpm d2q; do
    for b in SegInterest "ItemPosition+prior|N"; do
        for cold in "" --cold; do
            tag="$split-$m-vs-${b//[|+]/_}${cold:+-cold}"
            nice -n 10 .venv/bin/segint compare "${files[@]}" "$m" "$b" $cold --no-progress \
                --json "$R/compare/$tag.json" > "$R/compare/$tag.txt"
        done
    done
done
echo "wrote $R/compare/$split-*"
