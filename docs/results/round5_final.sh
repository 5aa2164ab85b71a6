#!/usr/bin/env bash
# Round 5 final runs (docs/results/user-signal.md, "Round 5"): the default config (distillation
# from an out-of-fold hazard-gbdt, optim.distill 4) for seeds 0 1 2 of both splits, the two
# splits side by side, then SegInterest paired with hazard-gbdt and the lookups (pooled and per
# split). Run from the project root; needs RESULTS/<split>-s<seed>/learned-gbdt.parquet
# (`LEARNERS=hazard-gbdt bash docs/results/learned_baselines.sh SPLIT 0 1 2`).
# Usage: bash docs/results/round5_final.sh
set -euo pipefail
D=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
R=${RESULTS:-/work/results}
M=$R/model5
export OMP_NUM_THREADS=1
one_split() {  # split: train, evaluate and merge seeds 0 1 2
  local split=$1 seed out d
  for seed in 0 1 2; do
    out=runs/r5-$split-s$seed; d=$M/$split-s$seed; mkdir -p "$d"
    nice -n 10 .venv/bin/segint train --data "$D" --format kuairand --split "$split" \
      --seed $seed --config configs/base.yaml --threads 1 --no-progress --out "$out"
    nice -n 10 .venv/bin/segint evaluate --model "$out" --data "$D" --format kuairand \
      --split "$split" --seed $seed --threads 1 --predictions "$d/segint.parquet" \
      --json "$d/segint.json"
    .venv/bin/python -m learned.merge "$d/gbdt-with-segint.parquet" \
      "$R/$split-s$seed/learned-gbdt.parquet" "$d/segint.parquet"
  done
}
one_split temporal & one_split random_per_user & wait
t=("$M"/temporal-s{0,1,2}/gbdt-with-segint.parquet)
r=("$M"/random_per_user-s{0,1,2}/gbdt-with-segint.parquet)
files=("${t[@]}" "${r[@]}")
source docs/results/final_compare.sh
