#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against real servers (SeaweedFS, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# PostgreSQL tests are skipped (with the reason) only where the server could not be installed.
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then export GLEANER_REQUIRE_POSTGRES=1; fi
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
