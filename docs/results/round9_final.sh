#!/usr/bin/env bash
# Round 9 final runs (docs/results/user-signal.md, "Round 9"): the served mixture of the
# network and the per-video table (optim.video_trees 0.5) for seeds 0 1 2 of both splits,
# paired with hazard-gbdt, the lookups and the network alone (SegInterest(network)).
# Needs the networks (`segint train --config configs/base.yaml`, runs/r9-<split>-s<seed>) and
# RESULTS/<split>-s<seed>/learned-gbdt.parquet (`LEARNERS=hazard-gbdt bash
# docs/results/learned_baselines.sh SPLIT 0 1 2`). `--video-trees 0.5` fits the run's table as
# `segint train` does with optim.video_trees 0.5 (runs trained before that key existed have
# none). Usage, from the project root: bash docs/results/round9_final.sh
set -euo pipefail
D=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
R=${RESULTS:-/work/results/r9}
M=$R/model9
export OMP_NUM_THREADS=1
one_split() {  # split: evaluate and merge seeds 0 1 2
  local split=$1 seed run d
  for seed in 0 1 2; do
    run=runs/r9-$split-s$seed; d=$M/$split-s$seed; mkdir -p "$d"
    nice -n 10 .venv/bin/segint evaluate --model "$run" --data "$D" --format kuairand \
      --split "$split" --seed $seed --threads 1 --video-trees 0.5 \
      --predictions "$d/segint.parquet" --json "$d/segint.json" > "$d/segint.txt"
    .venv/bin/python -m learned.merge "$d/gbdt-with-segint.parquet" \
      "$R/$split-s$seed/learned-gbdt.parquet" "$d/segint.parquet"
  done
}
one_split temporal & one_split random_per_user & wait
t=("$M"/temporal-s{0,1,2}/gbdt-with-segint.parquet)
r=("$M"/random_per_user-s{0,1,2}/gbdt-with-segint.parquet)
files=("${t[@]}" "${r[@]}")
source docs/results/final_compare.sh
for b in hazard-gbdt "ItemPosition+prior|N" "SegInterest(network)"; do
  for set in pooled temporal random_per_user; do
    case $set in pooled) f=("${files[@]}");; temporal) f=("${t[@]}");; *) f=("${r[@]}");; esac
    name="$set-network-vs-${b//[|+()]/_}"
    [[ $b == "SegInterest(network)" ]] && name="$set-served-vs-network"
    a=SegInterest; [[ $b != "SegInterest(network)" ]] && a="SegInterest(network)"
    nice -n 10 .venv/bin/segint compare "${f[@]}" "$a" "$b" --no-progress \
      --json "$M/compare/$name.json" > "$M/compare/$name.txt"
  done
done
echo "wrote $M/compare/"
