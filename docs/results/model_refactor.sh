#!/bin/bash
# Reference run of the model/training refactor (issue 14, part 5): train, evaluate, export one
# small temporal seed-0 model from the source tree CODE, into /tmp/refactor-ref/TAG.
#   docs/results/model_refactor.sh before /tmp/refactor-base   # tree at 92e580d (git archive)
#   docs/results/model_refactor.sh after  "$PWD"               # this branch
#   .venv/bin/python docs/results/model_refactor_compare.py before after
set -e
TAG=$1; CODE=$(cd "$2" && pwd); OUT=/tmp/refactor-ref/$TAG; rm -rf "$OUT"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$ROOT/../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv
PY=$ROOT/.venv/bin/python
cd "$CODE"
export OMP_NUM_THREADS=1 PYTHONPATH=$CODE
nice -n 10 "$PY" -m segint.cli train --data "$D" --format kuairand --split temporal --seed 0 \
  --config configs/base.yaml --set optim.max_epochs=1 optim.eval_every=40 \
  --out "$OUT" --device cpu --threads 1 --no-progress
nice -n 10 "$PY" -m segint.cli evaluate --model "$OUT" --data "$D" --format kuairand \
  --split temporal --seed 0 --json "$OUT/eval.json" --predictions "$OUT/test.parquet"
nice -n 10 "$PY" -m segint.cli export --model "$OUT" --out "$OUT/artifact"
