#!/usr/bin/env bash
# Stop the local dev stack, any demo worker, the demo's local model and a gateway started beside it.
#   bash temporal-dev/stop.sh           the data in temporal-dev/.data (or $AIOPS_DEV_DATA) stays
#   bash temporal-dev/stop.sh --reset   ... and then delete it: agents, actions, audit log, demo key
set -euo pipefail
cd "$(dirname "$0")/.."
reset=0
for arg in "$@"; do
  case "$arg" in
    --reset) reset=1 ;;
    -h | --help) sed -n 2,4p "$0"; exit 0 ;;
    *) echo "usage: bash temporal-dev/stop.sh [--reset]" >&2; exit 2 ;;
  esac
done
data="${AIOPS_DEV_DATA:-temporal-dev/.data}"
# The demo's worker, its local model (demo.sh --llm=local) and a gateway whose pid was written there
# (aiops gateway --routes "$data/gateway.yaml" & echo $! >"$data/gateway.pid").
for name in worker llm gateway; do
  pidfile="$data/$name.pid"
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "demo $name stopped (pid $pid)"
    fi
    rm -f "$pidfile"
  fi
done
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
"$PY" temporal-dev/postgres.py stop
"$PY" temporal-dev/devserver.py stop
if [ "$reset" = 1 ]; then
  "$PY" temporal-dev/devserver.py reset
fi
