#!/usr/bin/env bash
# Start the local dev stack (the Temporal dev server; says so if it already runs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python temporal-dev/devserver.py start
