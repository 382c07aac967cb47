# shellcheck shell=bash
# Shared by start.sh, stop.sh and healthcheck.sh: where the repo, the venv and the settings are.
# Every script takes `--settings PATH` (default: $CODEXPOOL_SETTINGS, else <repo>/data/settings.json)
# and `--venv DIR` (default: $CODEXPOOL_VENV, else <repo>/.venv).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SETTINGS="${CODEXPOOL_SETTINGS:-$REPO/data/settings.json}"
VENV="${CODEXPOOL_VENV:-$REPO/.venv}"

# parse_common_args "$@": consumes --settings/--venv, leaves the rest in REST_ARGS.
parse_common_args() {
  REST_ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --settings) SETTINGS="$2"; shift 2 ;;
      --settings=*) SETTINGS="${1#*=}"; shift ;;
      --venv) VENV="$2"; shift 2 ;;
      --venv=*) VENV="${1#*=}"; shift ;;
      *) REST_ARGS+=("$1"); shift ;;
    esac
  done
  if [ -d "$(dirname "$SETTINGS")" ]; then
    SETTINGS="$(cd "$(dirname "$SETTINGS")" && pwd)/$(basename "$SETTINGS")"
  fi
  PY="$VENV/bin/python"
  if [ ! -x "$PY" ]; then
    echo "codexpool: no virtual environment at $VENV (run ./install.sh first)" >&2
    exit 2
  fi
}

# setting KEY: print one setting as the server would see it (file + environment overrides).
setting() {
  "$PY" - "$SETTINGS" "$1" <<'PYEOF'
import json, sys
from pathlib import Path
from codexpool.config import SettingsError, load_settings
try:
    s = load_settings(Path(sys.argv[1]))
except SettingsError as exc:
    print(f"codexpool: {exc}", file=sys.stderr)
    sys.exit(2)
value = s.public_dict()[sys.argv[2]] if sys.argv[2] != "dataDir" else str(s.data_path)
print(value if isinstance(value, str) else json.dumps(value))
PYEOF
}

# is_our_server PID: true when PID is alive and runs `codexpool ... serve` (guards against a
# stale pid file whose number now belongs to an unrelated process).
is_our_server() {
  local pid="$1" cmdline
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$cmdline" in
    *codexpool*serve*) return 0 ;;
    *) return 1 ;;
  esac
}
