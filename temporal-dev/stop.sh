#!/usr/bin/env bash
# Stop the local dev stack and any demo worker; the data in temporal-dev/.data stays.
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile="${AIOPS_DEV_DATA:-temporal-dev/.data}/worker.pid"
if [ -f "$pidfile" ]; then
  kill "$(cat "$pidfile")" 2>/dev/null && echo "demo worker stopped" || true
  rm -f "$pidfile"
fi
llmpid="${AIOPS_DEV_DATA:-temporal-dev/.data}/llm.pid"  # the demo's local model (demo.sh --llm=local)
if [ -f "$llmpid" ]; then
  kill "$(cat "$llmpid")" 2>/dev/null && echo "local model stopped" || true
  rm -f "$llmpid"
fi
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
"$PY" temporal-dev/postgres.py stop
"$PY" temporal-dev/devserver.py stop
