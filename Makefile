# Quickstart: `make demo` (set up + run the main job), `make test` (set up + run the whole suite).
.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench: setup
	.venv/bin/python bench/ingest.py

# ruff, the import-linter layering contracts ([tool.importlinter]) and mypy ([tool.mypy]: strict on storage/)
lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports && .venv/bin/mypy
