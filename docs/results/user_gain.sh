#!/usr/bin/env bash
# Where the user-level gain is (issue 11): SegInterest minus ItemPosition+prior|N and minus
# hazard-gbdt, paired on the same rows with bootstrap SEs (`segint compare`), pooled over the
# given run folders, on: all rows, cold-video rows, rows of users with >= 5 and >= 20
# strictly earlier views in the log (`segint compare --min-history`).
#
# Usage (from the project root):
#   bash docs/results/user_gain.sh [DIR ...]     # default: $R/{temporal,random_per_user}-s{0,1,2}
# Each DIR holds $SEGINT (SegInterest's `segint evaluate --predictions` file) and $LEARNED
# (`segint baselines --learned hazard-gbdt --predictions` of the same split and seed); they
# are joined with `python -m learned.merge` (refused unless they hold the same rows and
# identical lookups). A DIR holding one file named $MERGED (e.g. the output of `segint
# evaluate --learned hazard-gbdt --predictions`) is used as it is.
# Environment: R=/work/results  SEGINT=segint.parquet  LEARNED=learned-gbdt.parquet
#   MERGED=merged.parquet  DATA=<log(s) the earlier views are counted in, space-separated;
#   default ../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv>  FORMAT=kuairand
#   A=SegInterest  BOOT=1000  OUT=$R/user_gain
# Writes $OUT/<subset>-vs-<B>.{json,txt} and prints one Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${R:-/work/results}
SEGINT=${SEGINT:-segint.parquet}
LEARNED=${LEARNED:-learned-gbdt.parquet}
MERGED=${MERGED:-merged.parquet}
DATA=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
FORMAT=${FORMAT:-kuairand}
A=${A:-SegInterest}
BOOT=${BOOT:-1000}
OUT=${OUT:-$R/user_gain}
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD}
if [ $# -eq 0 ]; then
    set -- "$R"/temporal-s{0,1,2} "$R"/random_per_user-s{0,1,2}
fi
mkdir -p "$OUT"
files=()
for d in "$@"; do
    if [ -f "$d/$MERGED" ] && [ ! -f "$d/$SEGINT" ]; then
        files+=("$d/$MERGED")
        continue
    fi
    for f in "$d/$SEGINT" "$d/$LEARNED"; do
        [ -f "$f" ] || { echo "user_gain.sh: missing $f" >&2; exit 2; }
    done
    merged="$OUT/$(basename "$d").parquet"
    "$PY" -m learned.merge "$merged" "$d/$SEGINT" "$d/$LEARNED" > /dev/null
    files+=("$merged")
done
history=()
for f in $DATA; do history+=(--history-data "$f"); done
subsets=("all:" "cold:--cold" "history5:--min-history 5" "history20:--min-history 20")
for b in "ItemPosition+prior|N" hazard-gbdt; do
    for s in "${subsets[@]}"; do
        name=${s%%:*}
        flags=${s#*:}
        extra=()
        [ -n "$flags" ] && read -r -a extra <<< "$flags"
        case $name in history*) extra+=("${history[@]}" --format "$FORMAT") ;; esac
        tag="$name-vs-${b//[|+]/_}"
        nice -n 10 "$PY" -m segint.cli compare "${files[@]}" "$A" "$b" "${extra[@]}" \
            --bootstrap "$BOOT" --no-progress --json "$OUT/$tag.json" > "$OUT/$tag.txt" \
            || { echo "user_gain.sh: $tag failed: $(tail -1 "$OUT/$tag.txt")" >&2; exit 2; }
    done
done
"$PY" - "$OUT" "$A" "${#files[@]}" <<'PYEOF'
import json, sys
from pathlib import Path

out, a, n_files = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
metrics = ["NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10", "MAE", "XAUC"]
subsets = {"all": "all rows", "cold": "cold videos",
           "history5": "users with >= 5 earlier views", "history20": "users with >= 20 earlier views"}
print(f"{a} - B, strict protocol, {n_files} file(s) pooled; diff ± bootstrap SE "
      f"(**bold**: beyond 2 SE, the verdict in brackets)\n")
print("| B | subset | rows | " + " | ".join(metrics) + " |")
print("|---|---|---|" + "---|" * len(metrics))
for b in ("ItemPosition+prior|N", "hazard-gbdt"):
    for key, words in subsets.items():
        path = out / f"{key}-vs-{b.replace('|', '_').replace('+', '_')}.json"
        d = json.loads(path.read_text())
        cells = []
        for m in metrics:
            r = next(c for c in d["comparisons"] if c["metric"] == m and c["protocol"] == "strict")
            text = f"{r['diff']:+.4f} ± {r['se']:.4f}"
            cells.append(f"**{text} ({r['verdict']})**" if r["verdict"] in ("win", "loss") else text)
        print(f"| {b.replace('|', chr(92) + '|')} | {words} | {d['rows']:,} | " + " | ".join(cells) + " |")
PYEOF
