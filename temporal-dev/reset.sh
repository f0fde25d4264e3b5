#!/usr/bin/env bash
# Stop the local dev stack and delete its data (temporal-dev/.data, or $AIOPS_DEV_DATA): the next
# start, or demo, begins with no agents, actions, audit rows or demo key. Same as stop.sh --reset.
set -euo pipefail
exec bash "$(dirname "$0")/stop.sh" --reset
