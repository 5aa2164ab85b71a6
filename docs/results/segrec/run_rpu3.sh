#!/bin/bash
# Round 3 on the random_per_user split: one interest model per seed (the split depends on it;
# branch model's config, counts of training rows only, 1 epoch), its 5 cross-fit fold models,
# then Video and features+eff (both --calibrate) on WideDeep and DIN.
# usage: run_rpu3.sh SEED...
cd "$(dirname "$0")/../../.."
D=../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
R=runs/segrec3
mkdir -p $R/rpu
for s in "$@"; do
  I=$R/interest_rpu_s$s
  if ! grep -q '^wrote' $I.log 2>/dev/null; then
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint train --data $D --format kuairand \
      --split random_per_user --seed $s --set optim.max_epochs=1 --set optim.refresh_counts=false \
      --out $I > $I.log 2>&1 || exit 1
  fi
  for m in features-eff video; do
    for b in widedeep din; do
      out=$R/rpu/s$s/$b-$m
      [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
      extra="--calibrate"
      [ $m = features-eff ] && extra="$extra --effective-feature"
      OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint segrec train --backbone $b --mode ${m%-eff} \
        --seed $s --data $D --format kuairand --split random_per_user --max-epochs 8 --patience 2 \
        --threads 1 --interest-model $I $extra --no-progress --out $out > $R/rpu/s$s-$b-$m.log 2>&1
    done
  done
done
