#!/usr/bin/env bash
# The main job: set up, start the dev stack and a worker, and run the narrated demo.
#   scripts/demo.sh                   run the whole story; the stack and the worker keep running
#   scripts/demo.sh --leave-pending   stop at the pending approval, for you to decide
#   scripts/demo.sh --llm             add an llm agent's diagnosis, with a scripted model
#   scripts/demo.sh --llm=local       ... with a small local model on llama.cpp (offline; agents/llm/local_model.py)
# Run it as often as you like, flags in any order: each run is a new story (new event ids) beside
# the earlier ones. bash temporal-dev/stop.sh stops everything; stop.sh --reset also deletes the data.
set -euo pipefail
cd "$(dirname "$0")/.."
llm=""
for arg in "$@"; do
  case "$arg" in
    --leave-pending) ;;
    --llm | --llm=scripted) llm=scripted ;;
    --llm=local) llm=local ;;
    *) echo "usage: bash scripts/demo.sh [--leave-pending] [--llm | --llm=local]" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
bash temporal-dev/start.sh
export TEMPORAL_ADDRESS="127.0.0.1:${AIOPS_TEMPORAL_PORT:-7233}"
DATABASE_URL="$(.venv/bin/python temporal-dev/postgres.py url)"
export DATABASE_URL
data="${AIOPS_DEV_DATA:-temporal-dev/.data}"
mkdir -p "$data"
# With --llm the worker also loads the llm agent (and the demo's scripted model).
modules=""
[ -n "$llm" ] && modules="agents.llm,agents.llm.scripted"
if [ -f "$data/worker.pid" ] && kill -0 "$(cat "$data/worker.pid")" 2>/dev/null \
  && [ "$(cat "$data/worker.modules" 2>/dev/null)" != "$modules" ]; then
  echo "Restarting the demo worker (pid $(cat "$data/worker.pid")) with agent modules '$modules'."
  kill "$(cat "$data/worker.pid")"
  while kill -0 "$(cat "$data/worker.pid")" 2>/dev/null; do sleep 0.2; done
fi
if [ -f "$data/worker.pid" ] && kill -0 "$(cat "$data/worker.pid")" 2>/dev/null; then
  echo "A demo worker is already running (pid $(cat "$data/worker.pid"))."
else
  AIOPS_AGENT_MODULES="$modules" .venv/bin/python worker.py >"$data/worker.log" 2>&1 &
  echo $! >"$data/worker.pid"
  echo "$modules" >"$data/worker.modules"
  echo "Started a worker (pid $!), log in $data/worker.log"
fi
if [ "$llm" = local ]; then
  # The local model (a GGUF file from a PyPI package) on llama.cpp's server (xllamacpp), loopback.
  export AIOPS_LLM_LOCAL_PORT="${AIOPS_LLM_LOCAL_PORT:-18080}"
  model="${AIOPS_LLM_LOCAL_MODEL:-}"
  if [ -f "$data/llm.pid" ] && kill -0 "$(cat "$data/llm.pid")" 2>/dev/null \
    && [ "$(cat "$data/llm.model" 2>/dev/null)" != "$model" ]; then
    kill "$(cat "$data/llm.pid")"
    while kill -0 "$(cat "$data/llm.pid")" 2>/dev/null; do sleep 0.2; done
  fi
  if ! { [ -f "$data/llm.pid" ] && kill -0 "$(cat "$data/llm.pid")" 2>/dev/null; }; then
    .venv/bin/python -m agents.llm.local_model --port "$AIOPS_LLM_LOCAL_PORT" --threads 2 >"$data/llm.log" 2>&1 &
    echo $! >"$data/llm.pid"
    echo "$model" >"$data/llm.model"
    echo "Started the local model (pid $!) on 127.0.0.1:$AIOPS_LLM_LOCAL_PORT, log in $data/llm.log"
    for _ in $(seq 600); do
      grep -q "^listening on" "$data/llm.log" && break
      kill -0 "$(cat "$data/llm.pid")" 2>/dev/null || { tail -5 "$data/llm.log"; exit 1; }
      sleep 0.2
    done
  fi
fi
# The worker (and the local model) keep running after the demo, like the dev stack, so the
# README's commands work at once; bash temporal-dev/stop.sh stops them all.
.venv/bin/python scripts/demo.py "$@"
