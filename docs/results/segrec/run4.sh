#!/bin/bash
# Round 4 (issue 11.4): one SegRec variant, several seeds, on one split of the shared log.
# usage: [BACKBONES="widedeep din"] run4.sh SPLIT NAME "TRAIN OPTIONS" SEED...
#   SPLIT temporal: one interest model, runs/segrec4/interest_temporal;
#   SPLIT random_per_user: runs/segrec4/interest_rpu_sSEED per seed (built here when missing).
#   Every run: --calibrate --max-epochs 8 --patience 2 --threads 1, plus TRAIN OPTIONS.
#   Writes runs/segrec4/SPLIT/sSEED/BACKBONE-NAME (log beside it).
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD  # this checkout's code, not the venv owner's
D=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
R=runs/segrec4
SPLIT=$1 NAME=$2 OPTS=$3
shift 3
mkdir -p $R/$SPLIT
for s in "$@"; do
  if [ $SPLIT = temporal ]; then I=$R/interest_temporal; else I=$R/interest_rpu_s$s; fi
  if [ ! -f $I/model.pt ]; then
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint train --data $D --format kuairand \
      --split $SPLIT --seed $s --set optim.max_epochs=1 --set optim.refresh_counts=false \
      --no-progress --out $I > $I.log 2>&1 || exit 1
  fi
  for b in ${BACKBONES:-widedeep din}; do
    out=$R/$SPLIT/s$s/$b-$NAME; mkdir -p $R/$SPLIT/s$s
    [ -f $out/model.pt ] && grep -q '"epoch"' $out/metrics.jsonl && continue
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/segint segrec train --backbone $b --seed $s \
      --data $D --format kuairand --split $SPLIT --max-epochs 8 --patience 2 --threads 1 \
      --interest-model $I --calibrate $OPTS --no-progress --out $out > $out.log 2>&1 || echo "FAILED $out"
  done
done
