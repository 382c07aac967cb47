#!/usr/bin/env bash
# Exit 0 only when the running gateway's GET /api/health says "ready": true.
#   scripts/healthcheck.sh [--settings PATH] [--venv DIR] [--quiet]
# The port comes from settings.json (with the same environment overrides the server applies).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
parse_common_args "$@"
quiet=0
for arg in "${REST_ARGS[@]+"${REST_ARGS[@]}"}"; do
  case "$arg" in
    --quiet | -q) quiet=1 ;;
    *) echo "usage: scripts/healthcheck.sh [--settings PATH] [--venv DIR] [--quiet]" >&2; exit 2 ;;
  esac
done
port="$(setting port)"
host="$(setting host)"
case "$host" in "" | 0.0.0.0 | "::" | "[::]") host=127.0.0.1 ;; esac
case "$host" in *:*) host="[$host]" ;; esac
"$PY" - "http://$host:$port/api/health" "$quiet" <<'PYEOF'
import json, sys, urllib.error, urllib.request
url, quiet = sys.argv[1], sys.argv[2] == "1"
try:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
except urllib.error.HTTPError as exc:  # 503 still carries the health body
    body = exc.read()
except OSError as exc:
    if not quiet:
        print(f"unhealthy: {url}: {exc}")
    sys.exit(1)
try:
    health = json.loads(body)
except ValueError:
    health = {}
ready = isinstance(health, dict) and health.get("ready") is True
if not quiet:
    print(("ready: " if ready else "not ready: ") + url + " " + json.dumps(health))
sys.exit(0 if ready else 1)
PYEOF
