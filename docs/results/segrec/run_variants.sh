#!/bin/bash
# SegRec variants vs the video-level CTR on KuaiRand-Pure 04-25..30, temporal split (issue 11.4).
# usage: [BACKBONES="widedeep din"] run_variants.sh MODE[,MODE...] SEED... One interest model (temporal
# split, 1 epoch) serves every seed: the temporal split does not depend on the seed, so the seeds
# vary SegRec's initialisation and shuffling only. Cross-fitted interest inputs (5 folds, fold
# models with the interest run's config) are built by the first run and cached in
# $I/crossfit_k5.
#   interest model: OMP_NUM_THREADS=1 nice segint train --data $D --format kuairand \
#       --split temporal --seed 0 --set optim.max_epochs=1 --out runs/segrec2/interest_temporal
cd "$(dirname "$0")/../../.."
D=../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
R=runs/segrec2
I=$R/interest_temporal
MODES=$1
shift
for s in "$@"; do
  for m in ${MODES//,/ }; do
    for b in ${BACKBONES:-widedeep din}; do
      out=$R/exp/s$s/$b-$m
      [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
      extra=""
      case $m in
        *-insample) mode=${m%-insample}; extra="--cross-fit 0" ;;
        *) mode=$m ;;
      esac
      OMP_NUM_THREADS=1 nice .venv/bin/segint segrec train --backbone $b --mode $mode --seed $s \
        --data $D --format kuairand --split temporal --max-epochs 8 --patience 2 --threads 1 \
        --interest-model $I $extra --no-progress --out $out > $R/exp/s$s-$b-$m.log 2>&1
    done
  done
done
