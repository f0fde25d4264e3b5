#!/usr/bin/env bash
# The main job: set up, start the dev stack and a worker, and run the narrated demo.
#   scripts/demo.sh                   run the whole story, then stop the worker (the dev server stays up)
#   scripts/demo.sh --leave-pending   stop at the pending approval and leave everything running
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash temporal-dev/start.sh
export TEMPORAL_ADDRESS="127.0.0.1:${AIOPS_TEMPORAL_PORT:-7233}"
DATABASE_URL="$(.venv/bin/python temporal-dev/postgres.py url)"
export DATABASE_URL
data="${AIOPS_DEV_DATA:-temporal-dev/.data}"
mkdir -p "$data"
if [ -f "$data/worker.pid" ] && kill -0 "$(cat "$data/worker.pid")" 2>/dev/null; then
  echo "A demo worker is already running (pid $(cat "$data/worker.pid"))."
else
  .venv/bin/python worker.py >"$data/worker.log" 2>&1 &
  echo $! >"$data/worker.pid"
  echo "Started a worker (pid $!), log in $data/worker.log"
fi
leave=0
for arg in "$@"; do [ "$arg" = "--leave-pending" ] && leave=1; done
if [ "$leave" = 0 ]; then
  trap 'kill "$(cat "$data/worker.pid")" 2>/dev/null || true; rm -f "$data/worker.pid"' EXIT
fi
.venv/bin/python scripts/demo.py "$@"
