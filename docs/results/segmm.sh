#!/usr/bin/env bash
# SegMM sample, temporal split, seeds 0 1 2 (docs/results/segmm.md), from the project root.
#   bash docs/results/segmm.sh train     # default and model.exit_prior_base=global, 3 seeds
#   bash docs/results/segmm.sh select    # mean best validation NDCG@5 of each variant
#   VARIANT=default bash docs/results/segmm.sh evaluate   # the chosen variant's test rows
#   bash docs/results/segmm.sh compare   # pooled paired differences, all and cold rows
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
D=${D:-../shared/data/segmm_sample/SegMM_inter_sample.csv}
R=${R:-runs/segmm}
OUT=${OUT:-/work/results/evalh/segmm}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$R" "$OUT"
case ${1:?train|select|evaluate|compare} in
train)
    for s in $SEEDS; do
        for v in default global; do
            set_global=()
            [ $v = global ] && set_global=(--set model.exit_prior_base=global)
            [ -f "$R/$v-s$s/model.pt" ] && continue
            nice -n 10 .venv/bin/segint train --data "$D" --format segmm --split temporal \
                --seed "$s" --config configs/base.yaml --threads 1 --no-progress \
                --out "$R/$v-s$s" "${set_global[@]}" > "$R/$v-s$s.log" 2>&1
            grep "best validation" "$R/$v-s$s.log"
        done
    done ;;
select)
    for v in default global; do
        for s in $SEEDS; do
            echo "$v s$s $(grep -o 'best validation NDCG@5 (strict) [0-9.]* at step [0-9]*' "$R/$v-s$s.log" | tail -1)"
        done
    done ;;
evaluate)
    v=${VARIANT:?VARIANT=default|global}
    for s in $SEEDS; do
        nice -n 10 .venv/bin/segint evaluate --model "$R/$v-s$s" --data "$D" --format segmm \
            --split temporal --seed "$s" --learned hazard-gbdt --no-side-tables --threads 1 \
            --bootstrap 1000 --json "$OUT/$v-s$s.json" --predictions "$OUT/$v-s$s.parquet" \
            > "$OUT/$v-s$s.txt" 2>&1
    done ;;
compare)
    v=${VARIANT:-default}
    files=()
    for s in $SEEDS; do files+=("$OUT/$v-s$s.parquet"); done
    for b in "ItemPosition+prior|N" "AllPosition|N" hazard-gbdt; do
        for cold in "" --cold; do
            tag="$v-vs-${b//[|+]/_}${cold:+-cold}"
            nice -n 10 .venv/bin/segint compare "${files[@]}" SegInterest "$b" $cold \
                --no-progress --json "$OUT/$tag.json" > "$OUT/$tag.txt"
            cat "$OUT/$tag.txt"
        done
    done ;;
esac
