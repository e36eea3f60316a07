#!/usr/bin/env bash
# The main job on the embedded defaults (local store + SQLite), the whole loop on real data:
# Fashion-MNIST product photos → import (twice: the second run adds nothing) → labels, quality, integrity →
# near-duplicates → a leak-free snapshot → a first model → its report → what to collect next.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WS:-demo-workspace}
PER_CLASS=${PER_CLASS:-200}
EPOCHS=${EPOCHS:-6}
export PATH="$PWD/.venv/bin:$PATH"

rm -rf "$WS"
python -m harvest.idx "$WS/incoming" --split t10k --per-class "$PER_CLASS"
harvest init "$WS"
harvest import -w "$WS" "$WS/incoming" --labels-from-folders
echo "==> importing the same folder again: nothing new is added"
harvest import -w "$WS" "$WS/incoming" --labels-from-folders --json | python -c 'import json, sys; d = json.load(sys.stdin); print("added", d["added"], "duplicates", d["duplicates"])'
curate labels -w "$WS"
curate check -w "$WS"
curate fsck -w "$WS"
curate dedupe -w "$WS"
curate snapshot -w "$WS" --name demo
train run -w "$WS" --dataset demo --epochs "$EPOCHS" --img-size 28 --out "$WS/runs/first"
train report "$WS/runs/first"
harvest targets -w "$WS"
echo "==> report: $WS/runs/first/report.html; near-duplicates: $WS/reports/dedupe.html"
