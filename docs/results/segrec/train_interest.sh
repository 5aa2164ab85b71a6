#!/bin/bash
# Interest models for the SegRec experiment: base config, 2 epochs, one per split seed.
cd /work/main
for s in "$@"; do
  OMP_NUM_THREADS=1 .venv/bin/segint train --data /work/shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv \
    --format kuairand --split random_per_user --seed $s --set optim.max_epochs=1 optim.eval_every=54 \
    --out runs/segrec/interest_s$s --no-progress > runs/segrec/interest_s$s.log 2>&1
done
