#!/usr/bin/env bash
# Replays every scenario on a private PostgreSQL cluster and on the memory
# store, and fails unless both reach the same end state for every item and
# print the same trace.
# Usage: stores_agree.sh <turing binary> <scenario files...>
set -euo pipefail
turing=$1
shift
dir=$(mktemp -d /tmp/turing-replay-XXXXXX)
chmod 755 "$dir" # the cluster runs as postgres under root
cleanup() {
  # `turing replay` stops the cluster it started; this is for when it could not.
  local pid_file="$dir/db/postgres/postmaster.pid"
  if [ -f "$pid_file" ]; then
    kill -INT "$(head -1 "$pid_file")" 2>/dev/null || true
    for _ in $(seq 100); do [ -f "$pid_file" ] || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$turing" --log-level warn replay --once --store postgres --compare-stores --data-dir "$dir/db" "$@"
