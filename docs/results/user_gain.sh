#!/usr/bin/env bash
# Where the user-level gain is (issue 11): SegInterest minus ItemPosition+prior|N and minus
# hazard-gbdt, paired on the same rows with bootstrap SEs (`segint compare`), pooled over the
# given run folders, on: all rows, cold-video rows, rows of users with >= 5 and >= 20
# strictly earlier views in the log (`segint compare --min-history`).
#
# Usage (from the project root):
#   bash docs/results/user_gain.sh [NAME ...]    # default: {temporal,random_per_user}-s{0,1,2}
# For each NAME it joins $SEGINT_ROOT/NAME/$SEGINT (SegInterest's `segint evaluate
# --predictions` file) with $LEARNED_ROOT/NAME/$LEARNED (`segint baselines --learned
# hazard-gbdt --predictions` of the same split and seed) by `python -m learned.merge`, which
# refuses files of other rows or other lookups. FILES="a.parquet b.parquet" instead uses
# files that already hold A and both Bs (e.g. `segint evaluate --learned hazard-gbdt
# --predictions`, docs/results/later-week.md).
# Environment: R=/work/results  SEGINT_ROOT=$R/model  SEGINT=segint.parquet  LEARNED_ROOT=$R
#   LEARNED=learned-gbdt.parquet  DATA=<log(s) the earlier views are counted in, space-
#   separated; default ../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv>
#   FORMAT=kuairand  A=SegInterest  BOOT=1000  OUT=$R/user_gain
# Writes $OUT/<subset>-vs-<B>.{json,txt} and prints one Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${R:-/work/results}
SEGINT_ROOT=${SEGINT_ROOT:-$R/model}
SEGINT=${SEGINT:-segint.parquet}
LEARNED_ROOT=${LEARNED_ROOT:-$R}
LEARNED=${LEARNED:-learned-gbdt.parquet}
DATA=${DATA:-../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv}
FORMAT=${FORMAT:-kuairand}
A=${A:-SegInterest}
BOOT=${BOOT:-1000}
OUT=${OUT:-$R/user_gain}
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD}
mkdir -p "$OUT"
files=()
if [ -n "${FILES:-}" ]; then
    read -r -a files <<< "$FILES"
else
    [ $# -gt 0 ] || set -- temporal-s{0,1,2} random_per_user-s{0,1,2}
    for name in "$@"; do
        for f in "$SEGINT_ROOT/$name/$SEGINT" "$LEARNED_ROOT/$name/$LEARNED"; do
            [ -f "$f" ] || { echo "user_gain.sh: missing $f" >&2; exit 2; }
        done
        merged="$OUT/$name.parquet"
        "$PY" -m learned.merge "$merged" "$SEGINT_ROOT/$name/$SEGINT" \
            "$LEARNED_ROOT/$name/$LEARNED" > /dev/null
        files+=("$merged")
    done
fi
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
        n = f"{d['rows']:,}" + (f" ({len(d['skipped'])} file(s) had none)" if d.get("skipped") else "")
        print(f"| {b.replace('|', chr(92) + '|')} | {words} | {n} | " + " | ".join(cells) + " |")
PYEOF
