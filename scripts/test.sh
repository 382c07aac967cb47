#!/usr/bin/env bash
# Run the test suite, whole or in parts:
#   scripts/test.sh unit     fast tests: no codex binary, no browser
#   scripts/test.sh e2e      real server + real codex binary against the fake ChatGPT backend
#   scripts/test.sh fuzz     schemathesis fuzzing of every route (a subset of e2e)
#   scripts/test.sh browser  headless Chromium against the real server
#   scripts/test.sh clients  real clients (SDKs, agent frameworks) against the real server
#   scripts/test.sh [all]    everything
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
part="${1:-all}"
shift || true
case "$part" in
  unit) exec "$PY" -m pytest -m "not e2e and not browser" "$@" ;;
  e2e) exec "$PY" -m pytest -m "e2e" "$@" ;;
  fuzz) exec "$PY" -m pytest -m "fuzz" "$@" ;;
  browser) exec "$PY" -m pytest -m "browser" "$@" ;;
  clients) exec "$PY" -m pytest -m "clients" tests/clients "$@" ;;
  all) exec "$PY" -m pytest "$@" ;;
  *) echo "usage: scripts/test.sh [unit|e2e|fuzz|browser|clients|all] [pytest args]" >&2; exit 2 ;;
esac
