#!/usr/bin/env bash
# Start the local dev stack: the Temporal dev server and PostgreSQL (each says so if already running).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/python temporal-dev/devserver.py start
.venv/bin/python temporal-dev/postgres.py start
