#!/bin/bash
# Interest models for the SegRec experiment: base config, 1 epoch, one per split seed.
# The recorded table's interest models came from the defaults of commit 37e5f6e (d=64, lr 1e-3,
# weight decay 1e-4, position bias per slot only, no exit-count prior); run today, this script
# trains the current default instead, so its SegRec numbers will differ from the table.
cd "$(dirname "$0")/../../.."
for s in "$@"; do
  OMP_NUM_THREADS=1 .venv/bin/segint train --data ../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv \
    --format kuairand --split random_per_user --seed $s --set optim.max_epochs=1 optim.eval_every=54 \
    --out runs/segrec/interest_s$s --no-progress > runs/segrec/interest_s$s.log 2>&1
done
