# shellcheck shell=bash disable=SC2154  # M, files, t, r: set by the sourcing script
# Sourced by docs/results/round4_final.sh and round5_final.sh once their runs are merged:
# SegInterest paired with hazard-gbdt and the lookups (`segint compare`), pooled and per split.
# Needs M (the round's results folder) and the arrays files (all merged predictions files),
# t (temporal) and r (random_per_user); writes $M/compare/<set>-vs-<baseline>.{json,txt}.
mkdir -p "$M/compare"
run() {  # set, baseline
  local set=$1 b=$2 f
  case $set in pooled) f=("${files[@]}");; temporal) f=("${t[@]}");; *) f=("${r[@]}");; esac
  nice -n 10 .venv/bin/segint compare "${f[@]}" SegInterest "$b" --no-progress \
    --json "$M/compare/$set-vs-${b//[|+]/_}.json" > "$M/compare/$set-vs-${b//[|+]/_}.txt"
}
for b in hazard-gbdt "ItemPosition+prior|N"; do for set in pooled temporal random_per_user; do run $set "$b"; done; done
for b in "AllPosition|N" "ItemPosition+prior" ItemPosition UserPosition AllPosition; do run pooled "$b"; done
echo "wrote $M/compare/"
