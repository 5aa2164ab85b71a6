#!/usr/bin/env bash
# The synthetic content experiment (issue 3 item 5): ID-only vs Content-only vs Both on a log
# whose exits depend on segment content, same split, seed and config; then the heatmap of one
# video for three users. Writes OUT/table.md (default OUT=reports/synthetic-content).
#
#   bash docs/results/synthetic_content.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-reports/synthetic-content}
SEGINT=(.venv/bin/python -m segint.cli)
mkdir -p "$OUT"
[ -d "$OUT/data/features" ] || "${SEGINT[@]}" features synth --out "$OUT/data"
LOG="$OUT/data/log.parquet"
SRC=(--data "$LOG" --format canonical --split random_per_user --seed 0)
for spec in "id:[id]:0" "content:[content]:64" "both:[id,content]:64"; do
  IFS=: read -r name modalities dim <<< "$spec"
  [ -f "$OUT/$name.json" ] && continue
  start=$(date +%s)
  "${SEGINT[@]}" train "${SRC[@]}" --config configs/synthetic.yaml --features "$OUT/data/features" \
    --set "model.modalities=$modalities" "model.content_dim=$dim" \
    --out "$OUT/$name" --threads 1 --no-progress
  echo $(( $(date +%s) - start )) > "$OUT/$name.seconds"
  "${SEGINT[@]}" evaluate --model "$OUT/$name" "${SRC[@]}" --s-max 13 --threads 1 \
    --json "$OUT/$name.json" > "$OUT/$name.txt"
done
"${SEGINT[@]}" plot heatmap --model "$OUT/both" --data "$LOG" --format canonical \
  --user 327 132 446 --video 4808 --out "$OUT/heatmap_both.png"
.venv/bin/python - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = [("ID-only", "id", "SegInterest"), ("Content-only", "content", "SegInterest"),
        ("Both (ID + content)", "both", "SegInterest"), ("ItemPosition+prior", "id", "ItemPosition+prior")]
lines = ["| method | strict NDCG@5 | strict HR@1 | paper NDCG@5 | paper HR@1 | MAE | train s |",
         "|---|---|---|---|---|---|---|"]
for label, run, method in rows:
    r = json.loads((out / f"{run}.json").read_text())
    s, p = r["strict"][method], r["paper"][method]
    secs = (out / f"{run}.seconds").read_text().strip() if method == "SegInterest" else "-"
    lines.append(f"| {label} | {s['NDCG@5']:.4f} | {s['HR@1']:.4f} | {p['NDCG@5']:.4f} | "
                 f"{p['HR@1']:.4f} | {s['MAE']:.3f} | {secs} |")
rows_info = json.loads((out / "id.json").read_text())["rows"]
lines.append(f"\nrows: fit {rows_info['train']:,}, test {rows_info['test']:,}")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
