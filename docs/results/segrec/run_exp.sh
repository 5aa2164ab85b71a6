#!/bin/bash
# SegRec experiment on KuaiRand-Pure: per split seed, both backbones x all modes.
cd "$(dirname "$0")/../../.."
D=../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
R=runs/segrec
COMMON="--data $D --format kuairand --split random_per_user --max-epochs 8 --patience 2 --no-progress"
for s in "$@"; do
  for m in video segsum segadjust itemposition segrec; do
    if [ $m = segrec ]; then
      until grep -q "^wrote" $R/interest_s$s.log 2>/dev/null; do sleep 30; done
    fi
    for b in widedeep din; do
      out=$R/exp/s$s/$b-$m
      [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
      OMP_NUM_THREADS=1 .venv/bin/segint segrec train --backbone $b --mode $m --seed $s \
        --interest-model $R/interest_s$s $COMMON --out $out > $R/exp/s$s-$b-$m.log 2>&1
    done
  done
done
