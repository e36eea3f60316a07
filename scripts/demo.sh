#!/usr/bin/env bash
# The main job on the embedded defaults (local store + SQLite), offline: Gleaner's whole loop against a local
# shop built from real Fashion-MNIST images — scrape → dedupe → snapshot → train → report → targets → a
# `targets = true` job that collects the scarce class → train again → recall before and after
# (`harvest demo`, README "The whole loop"). OUT and BUDGET (full | small) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
harvest demo --out "${OUT:-demo-shop}" --budget "${BUDGET:-full}"
