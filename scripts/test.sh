#!/usr/bin/env bash
# The whole test suite: set up, lint, then pytest against real servers it starts itself, measuring
# branch coverage of the product ([tool.coverage.*] in pyproject.toml, subprocesses included).
# Extra arguments go to pytest (e.g. scripts/test.sh -k approvals); a partial run is not held to
# the coverage floor, only the whole suite is. COVERAGE_REPORT=term-missing (or html, xml, ...)
# prints the report in another form (default: files not fully covered, then the total);
# COVERAGE=0 runs without measuring (quicker, for a local run).
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
if [ "${COVERAGE:-1}" = 0 ]; then
  echo "== pytest"
  exec .venv/bin/python -m pytest "$@"
fi
echo "== pytest (with branch coverage)"
rm -f .coverage .coverage.*
floor=()
[ "$#" -eq 0 ] || floor=(--cov-fail-under=0)
exec .venv/bin/python -m pytest --cov --cov-report="${COVERAGE_REPORT:-term:skip-covered}" "${floor[@]}" "$@"
