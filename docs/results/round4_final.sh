#!/usr/bin/env bash
# Round 4 final runs (docs/results/user-signal.md): the default config for seeds 0 1 2 of both
# splits, then SegInterest paired with hazard-gbdt and the lookups (pooled and per split).
# Run from the project root; needs RESULTS/<split>-s<seed>/learned-gbdt.parquet (the lead's).
# Usage: bash docs/results/round4_final.sh
set -euo pipefail
D=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
R=${RESULTS:-/work/results}
M=$R/model
export OMP_NUM_THREADS=1
files=(); t=(); r=()
for seed in 0 1 2; do
  for split in temporal random_per_user; do
    out=runs/$split-s$seed; d=$M/$split-s$seed; mkdir -p "$d"
    nice -n 10 .venv/bin/segint train --data "$D" --format kuairand --split $split --seed $seed \
      --config configs/base.yaml --threads 1 --no-progress --out $out
    nice -n 10 .venv/bin/segint evaluate --model $out --data "$D" --format kuairand --split $split \
      --seed $seed --threads 1 --predictions "$d/segint.parquet" --json "$d/segint.json"
    .venv/bin/python -m learned.merge "$d/gbdt-with-segint.parquet" \
      "$R/$split-s$seed/learned-gbdt.parquet" "$d/segint.parquet"
    files+=("$d/gbdt-with-segint.parquet")
    if [ $split = temporal ]; then t+=("$d/gbdt-with-segint.parquet"); else r+=("$d/gbdt-with-segint.parquet"); fi
  done
done
source docs/results/final_compare.sh
