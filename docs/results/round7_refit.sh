#!/usr/bin/env bash
# Round 7 of issue 11 (docs/results/user-signal.md): does `optim.refit` (retrain on training +
# validation rows for the early-stopped step count) pay? Judged without test rows: the log less
# its temporal test rows is split again by time, so the inner split's test rows are the real
# validation rows (3,074 rows, 1 more than the outer 3,073: a tied timestamp). Per seed, the
# default config with and without refit, each scored with `segint evaluate --predictions`,
# then paired with `segint compare` (refit columns renamed Refit). Run from the project root.
# Usage: bash docs/results/round7_refit.sh [SEEDS...]   (default 0 1 2; ~4 min per seed here, and
# ~3 min for the hazard-gbdt pairing of seed 0 at the end)
set -euo pipefail
D=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
N=${RESULTS:-/work/results}/refit
seeds=("${@:-0 1 2}")
mkdir -p "$N"
export OMP_NUM_THREADS=1
.venv/bin/python - "$D" "$N/nontest.csv" <<'PY'
import sys
import polars as pl
from segint.data import load_table
from segint.splits import TEST, temporal
table = load_table(sys.argv[1], "kuairand")
cut = table["time_ms"].to_numpy()[temporal(table) == TEST].min()  # first test timestamp
pl.read_csv(sys.argv[1]).filter(pl.col("time_ms") < cut).write_csv(sys.argv[2])
PY
one() {  # seed variant
  local extra=() out="runs/refit-$2-s$1"
  [ "$2" = refit ] && extra=(--set optim.refit=true)
  nice -n 10 .venv/bin/segint train --data "$N/nontest.csv" --format kuairand --split temporal \
    --seed "$1" --config configs/base.yaml --threads 1 --no-progress --out "$out" "${extra[@]}"
  nice -n 10 .venv/bin/segint evaluate --model "$out" --data "$N/nontest.csv" --format kuairand \
    --split temporal --seed "$1" --threads 1 --predictions "$N/$2-s$1.parquet" > "$N/$2-s$1.txt"
}
files=()
for s in ${seeds[@]}; do
  one "$s" default & one "$s" refit & wait
  .venv/bin/python - "$N/refit-s$s.parquet" "$N/refit-only-s$s.parquet" <<'PY'
import sys
import polars as pl
b = pl.read_parquet(sys.argv[1])
keep = [c for c in b.columns if "." not in c or c.startswith("SegInterest.")]
b = b.select(keep)
b.rename({c: c.replace("SegInterest.", "Refit.") for c in keep if "." in c}).write_parquet(sys.argv[2])
PY
  .venv/bin/python -m learned.merge "$N/both-s$s.parquet" "$N/default-s$s.parquet" \
    "$N/refit-only-s$s.parquet"
  .venv/bin/segint compare "$N/both-s$s.parquet" Refit SegInterest --no-progress
  files+=("$N/both-s$s.parquet")
done
.venv/bin/segint compare "${files[@]}" Refit SegInterest --no-progress
# The default run against hazard-gbdt on the same inner split (seed 0 only; GBDT=0 skips it).
if [ "${GBDT:-1}" = 1 ] && [ -f "$N/both-s0.parquet" ]; then
  nice -n 10 .venv/bin/segint baselines --data "$N/nontest.csv" --format kuairand --split temporal \
    --seed 0 --learned hazard-gbdt --threads 1 --predictions "$N/gbdt-s0.parquet" > "$N/gbdt-s0.txt"
  .venv/bin/python -m learned.merge "$N/with-gbdt-s0.parquet" "$N/both-s0.parquet" "$N/gbdt-s0.parquet"
  .venv/bin/segint compare "$N/with-gbdt-s0.parquet" SegInterest hazard-gbdt --no-progress
fi
