#!/bin/bash
# After run_rpu3.sh (its interest models and cross-fit caches): WideDeep features (8 columns)
# and DIN features+lin (--dense-linear) on the random_per_user split, --calibrate.
# usage: run_rpu3_extra.sh SEED...
cd "$(dirname "$0")/../../.."
D=../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
R=runs/segrec3
for s in "$@"; do
  I=$R/interest_rpu_s$s
  for bm in widedeep:features din:features-lin; do
    b=${bm%%:*} m=${bm#*:}
    out=$R/rpu/s$s/$b-$m
    [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
    extra="--calibrate"
    [ $m = features-lin ] && extra="$extra --dense-linear"
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint segrec train --backbone $b --mode features \
      --seed $s --data $D --format kuairand --split random_per_user --max-epochs 8 --patience 2 \
      --threads 1 --interest-model $I $extra --no-progress --out $out > $R/rpu/s$s-$b-$m.log 2>&1
  done
done
