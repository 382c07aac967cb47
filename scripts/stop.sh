#!/usr/bin/env bash
# Stop the background gateway started by start.sh: SIGTERM to the pid in <dataDir>/codexpool.pid,
# wait for its graceful shutdown, then SIGKILL only that process group if it is still there.
#   scripts/stop.sh [--settings PATH] [--venv DIR] [--timeout SECONDS]
# Never kills by name: only the recorded pid (checked to still be a codexpool server) and its group.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
parse_common_args "$@"
timeout_s=""
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout_s="$2"; shift 2 ;;
    *) echo "usage: scripts/stop.sh [--settings PATH] [--venv DIR] [--timeout SECONDS]" >&2; exit 2 ;;
  esac
done
data="$(setting dataDir)"
# Default wait: the server's own grace period plus time to stop its codex processes.
[ -n "$timeout_s" ] || timeout_s=$(($(setting shutdownGraceSeconds) + 15))
pidfile="$data/codexpool.pid"
if [ ! -f "$pidfile" ]; then
  echo "codexpool is not running (no $pidfile)"
  exit 0
fi
pid="$(cat "$pidfile")"
if ! is_our_server "$pid"; then
  echo "codexpool is not running (stale pid file for pid $pid removed)"
  rm -f "$pidfile"
  exit 0
fi
kill -TERM "$pid"
deadline=$((SECONDS + timeout_s))
while is_our_server "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 0.2
done
status=0
if is_our_server "$pid"; then
  pgid="$(ps -o pgid= -p "$pid" | tr -d ' ' || true)"
  if [ "$pgid" = "$pid" ]; then
    echo "codexpool (pid $pid) still running after ${timeout_s}s: killing its process group" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
  else
    echo "codexpool (pid $pid) still running after ${timeout_s}s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  status=1
fi
# Anything alive left in the server's process group would be an orphan: report it, end it.
# (Zombies are skipped: an exited server waits there until its new parent reaps it.)
left="$(ps -e -o pid=,pgid=,stat= 2>/dev/null | awk -v g="$pid" '$2 == g && $3 !~ /^Z/ {print $1}' || true)"
if [ -n "$left" ]; then
  echo "processes left in group $pid: $(echo "$left" | tr '\n' ' '); killing them" >&2
  kill -KILL -- "-$pid" 2>/dev/null || true
  status=1
fi
rm -f "$pidfile"
if [ "$status" = 0 ]; then
  echo "codexpool stopped (pid $pid)"
fi
exit "$status"
