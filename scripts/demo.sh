#!/usr/bin/env bash
# The main job on the embedded defaults (local store + SQLite): real Fashion-MNIST product photos into a
# fresh workspace, imported twice (the second run adds nothing), then the label table and an integrity check.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WS:-demo-workspace}
PER_CLASS=${PER_CLASS:-200}
export PATH="$PWD/.venv/bin:$PATH"

rm -rf "$WS"
python -m harvest.idx "$WS/incoming" --split t10k --per-class "$PER_CLASS"
harvest init "$WS"
harvest import -w "$WS" "$WS/incoming" --labels-from-folders
echo "==> importing the same folder again: nothing new is added"
harvest import -w "$WS" "$WS/incoming" --labels-from-folders --json | python -c 'import json, sys; d = json.load(sys.stdin); print("added", d["added"], "duplicates", d["duplicates"])'
curate labels -w "$WS"
curate fsck -w "$WS"
