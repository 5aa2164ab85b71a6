#!/bin/bash
# SegRec vs the video-level CTR, round 3 (issue 11.4): the interest model of branch model
# (user tilt, exit_prior 32 over the same-N profile) with counts of the training rows only
# (optim.refresh_counts=false: validation rows pick the epoch and fit the Platt scaling, so
# their interest inputs must not contain their own exits), P(effective) feature, Platt
# scaling on validation rows. KuaiRand-Pure 04-25..30, temporal split.
# usage: [BACKBONES="widedeep din"] run_variants3.sh MODE[,MODE...] SEED...
#   MODE: video | features | features-eff (features + --effective-feature) | features-lin,
#   features-eff-lin (DIN: + --dense-linear); every run --calibrate
#   interest model: OMP_NUM_THREADS=1 nice -n 10 segint train --data $D --format kuairand \
#       --split temporal --seed 0 --set optim.max_epochs=1 --set optim.refresh_counts=false \
#       --out runs/segrec3/interest_temporal
cd "$(dirname "$0")/../../.."
D=../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
R=runs/segrec3
I=$R/interest_temporal
MODES=$1
shift
mkdir -p $R/exp
for s in "$@"; do
  for m in ${MODES//,/ }; do
    for b in ${BACKBONES:-widedeep din}; do
      out=$R/exp/s$s/$b-$m
      [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
      extra="--calibrate"
      case $m in
        features-eff) mode=features; extra="$extra --effective-feature" ;;
        features-lin) mode=features; extra="$extra --dense-linear" ;;
        features-eff-lin) mode=features; extra="$extra --effective-feature --dense-linear" ;;
        *) mode=$m ;;
      esac
      OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint segrec train --backbone $b --mode $mode --seed $s \
        --data $D --format kuairand --split temporal --max-epochs 8 --patience 2 --threads 1 \
        --interest-model $I $extra --no-progress --out $out > $R/exp/s$s-$b-$m.log 2>&1
    done
  done
done
