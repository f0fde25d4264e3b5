#!/usr/bin/env bash
# The whole test suite: set up, lint, then pytest against real servers it starts itself.
# Extra arguments go to pytest (e.g. scripts/test.sh -k approvals).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== import direction"
.venv/bin/lint-imports --no-cache
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
