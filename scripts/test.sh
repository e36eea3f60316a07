#!/usr/bin/env bash
# Set up (idempotent), run the gates (ruff, import contracts, mypy) and the whole test suite against real servers
# (SeaweedFS, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# PostgreSQL tests are skipped (with the reason) only where the server could not be installed.
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then export GLEANER_REQUIRE_POSTGRES=1; fi
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layering contracts of DESIGN.md ([tool.importlinter] in pyproject.toml)
.venv/bin/mypy  # [tool.mypy]: the whole tree, strict on storage/
exec .venv/bin/pytest "$@"
