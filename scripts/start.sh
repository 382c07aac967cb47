#!/usr/bin/env bash
# Start the gateway in the background (when systemd is not managing it) and wait until healthy.
#   scripts/start.sh [--settings PATH] [--venv DIR] [--wait SECONDS]
# The pid goes to <dataDir>/codexpool.pid and the log to <dataDir>/codexpool.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
parse_common_args "$@"
wait_s=60
set -- "${REST_ARGS[@]+"${REST_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --wait) wait_s="$2"; shift 2 ;;
    *) echo "usage: scripts/start.sh [--settings PATH] [--venv DIR] [--wait SECONDS]" >&2; exit 2 ;;
  esac
done
# The data folder, its log and pid file are private whatever the caller's umask (the server
# sets its own umask too).
umask 077
data="$(setting dataDir)"
mkdir -p "$data"
pidfile="$data/codexpool.pid"
logfile="$data/codexpool.log"
if [ -f "$pidfile" ] && is_our_server "$(cat "$pidfile")"; then
  echo "codexpool is already running (pid $(cat "$pidfile"))"
  exit 0
fi
rm -f "$pidfile"
# setsid: the server leads its own process group, so stop.sh can end exactly that group and
# nothing else; stdin from /dev/null so it never waits on a terminal.
setsid "$VENV/bin/codexpool" --settings "$SETTINGS" serve >>"$logfile" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
deadline=$((SECONDS + wait_s))
while [ "$SECONDS" -lt "$deadline" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "codexpool exited during start-up; last log lines ($logfile):" >&2
    tail -n 20 "$logfile" >&2 || true
    rm -f "$pidfile"
    exit 1
  fi
  if "$REPO/scripts/healthcheck.sh" --settings "$SETTINGS" --venv "$VENV" --quiet; then
    echo "codexpool started (pid $pid, log $logfile)"
    exit 0
  fi
  sleep 0.5
done
echo "codexpool (pid $pid) is not healthy after ${wait_s}s; see $logfile" >&2
"$REPO/scripts/healthcheck.sh" --settings "$SETTINGS" --venv "$VENV" >&2 || true
exit 1
