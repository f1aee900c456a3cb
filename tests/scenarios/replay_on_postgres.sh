#!/usr/bin/env bash
# Runs `turing replay --store postgres ARGS...` on a private PostgreSQL
# cluster in a temporary directory, and removes it afterwards.
# Usage: replay_on_postgres.sh <turing binary> <replay options and scenario files...>
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
"$turing" --log-level warn replay --store postgres --data-dir "$dir/db" "$@"
