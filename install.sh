#!/usr/bin/env bash
# Install (or upgrade in place) and start codexpool from this checkout.
#
#   ./install.sh                 asks for the port, admin user/password and key prefixes
#   ./install.sh --yes [flags]   unattended: defaults, flags or environment, no questions
#
# Flags (environment in brackets):
#   --port N                 panel/API port [PORT]                         default 8080
#   --admin-username NAME    admin sign-in name [ADMIN_USERNAME]           default admin
#   --admin-password PW      admin password [ADMIN_PASSWORD]               default: random, shown once
#   --api-key-prefix P       prefix of user keys [OPENAI_API_KEY_PREFIX]   default sk-cp-
#   --master-key-prefix P    prefix of the master key [OPENAI_MASTER_KEY_PREFIX] default sk-cpm-
#   --data-dir DIR           settings, database, Codex homes               default <repo>/data
#   --prefix DIR             where the virtual environment goes (DIR/.venv) default <repo>
#   --no-start               install only; do not start or restart the service
#   --yes, -y                unattended
#
# Re-running upgrades in place: the package and codex are refreshed, settings.json and the data
# folder are kept as they are (settings are only written when none exist), the service restarts.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CODEX_VERSION="0.169.0"

yes=0
start=1
port="${PORT:-8080}"
admin_username="${ADMIN_USERNAME:-admin}"
admin_password="${ADMIN_PASSWORD:-}"
api_key_prefix="${OPENAI_API_KEY_PREFIX:-sk-cp-}"
master_key_prefix="${OPENAI_MASTER_KEY_PREFIX:-sk-cpm-}"
data_dir="$REPO/data"
prefix="$REPO"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

need_value() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -y | --yes) yes=1; shift ;;
    --no-start) start=0; shift ;;
    --port) need_value "$@"; port="$2"; shift 2 ;;
    --admin-username) need_value "$@"; admin_username="$2"; shift 2 ;;
    --admin-password) need_value "$@"; admin_password="$2"; shift 2 ;;
    --api-key-prefix) need_value "$@"; api_key_prefix="$2"; shift 2 ;;
    --master-key-prefix) need_value "$@"; master_key_prefix="$2"; shift 2 ;;
    --data-dir) need_value "$@"; data_dir="$2"; shift 2 ;;
    --prefix) need_value "$@"; prefix="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see ./install.sh --help)" ;;
  esac
done
if [ "$yes" = 0 ] && [ ! -t 0 ]; then
  echo "(no terminal to ask on: installing unattended, as with --yes)"
  yes=1
fi
mkdir -p "$data_dir" "$prefix"
data_dir="$(cd "$data_dir" && pwd)"
prefix="$(cd "$prefix" && pwd)"
venv="$prefix/.venv"
settings="$data_dir/settings.json"

# ask VAR "question" : read a value with the current one as default (interactive only).
ask() {
  local var="$1" question="$2" answer
  read -r -p "$question [${!var}]: " answer
  if [ -n "$answer" ]; then printf -v "$var" '%s' "$answer"; fi
}

ask_password() {
  local first second
  while true; do
    read -r -s -p "Admin password (empty: generate one): " first
    echo
    if [ -z "$first" ]; then admin_password=""; return; fi
    if [ "${#first}" -lt 8 ]; then echo "At least 8 characters, please."; continue; fi
    read -r -s -p "Admin password again: " second
    echo
    if [ "$first" = "$second" ]; then admin_password="$first"; return; fi
    echo "The two passwords differ; try again."
  done
}

# --- prerequisites -----------------------------------------------------------------------
say "Checking prerequisites"
python=""
for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$(command -v "$candidate")"
    break
  fi
done
[ -n "$python" ] || die "Python 3.11 or newer is required.
  Debian 12 / Ubuntu 24.04: apt-get install python3 python3-venv
  elsewhere: https://www.python.org/downloads/ or your distribution's python3.11+ package"
"$python" -c 'import venv, ensurepip' 2>/dev/null ||
  die "$python has no venv/ensurepip module. Debian/Ubuntu: apt-get install python3-venv"
echo "python: $python ($("$python" --version 2>&1))"

# The codex CLI: an explicit CODEXPOOL_CODEX_BIN, the pinned project-local install, or PATH's.
codex_usable() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
local_codex() {
  local bin
  for bin in "$REPO"/.codex-cli/node_modules/@openai/codex-*/vendor/*/bin/codex; do
    if codex_usable "$bin"; then echo "$bin"; return 0; fi
  done
  return 1
}
codex_bin=""
codex_setting=""
if [ -n "${CODEXPOOL_CODEX_BIN:-}" ] && codex_usable "$CODEXPOOL_CODEX_BIN"; then
  codex_bin="$CODEXPOOL_CODEX_BIN"
  codex_setting="$codex_bin"
elif codex_bin="$(local_codex)"; then
  :
elif command -v codex >/dev/null 2>&1 && codex_usable "$(command -v codex)"; then
  codex_bin="$(command -v codex)"
  codex_setting="$codex_bin" # a service's PATH may differ from this shell's
else
  codex_bin=""
fi
if [ -z "$codex_bin" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    die "the codex CLI is missing and npm is needed to install it (@openai/codex@$CODEX_VERSION).
  Debian/Ubuntu: apt-get install nodejs npm     (or Node.js 18+ from https://nodejs.org)"
  fi
  say "Installing @openai/codex@$CODEX_VERSION into $REPO/.codex-cli"
  mkdir -p "$REPO/.codex-cli"
  npm install --prefix "$REPO/.codex-cli" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$CODEX_VERSION"
  codex_bin="$(local_codex)" || die "npm installed @openai/codex but its binary does not run"
fi
echo "codex: $codex_bin ($("$codex_bin" --version 2>/dev/null))"

# --- package -------------------------------------------------------------------------------
say "Installing the codexpool package into $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q --upgrade pip
# Editable: the checkout is the code, so `git pull && ./install.sh` is the whole upgrade.
"$venv/bin/python" -m pip install -q -e "$REPO"
cli=("$venv/bin/codexpool" --settings "$settings")
echo "installed: $("$venv/bin/codexpool" --version)"

# --- settings ------------------------------------------------------------------------------
if [ -f "$settings" ]; then
  say "Keeping the existing $settings (edit it, or see settings.example.json)"
else
  if [ "$yes" = 0 ]; then
    say "A few questions (Enter keeps the default)"
    ask port "Panel port"
    ask admin_username "Admin username"
    ask_password
    ask api_key_prefix "API key prefix"
    ask master_key_prefix "Master key prefix"
  fi
  say "Writing $settings"
  init_args=(--port "$port" --admin-username "$admin_username"
    --api-key-prefix "$api_key_prefix" --master-key-prefix "$master_key_prefix")
  if [ -n "$codex_setting" ]; then init_args+=(--codex-bin "$codex_setting"); fi
  # The password travels by environment, not argv, so `ps` never shows it.
  ADMIN_PASSWORD="$admin_password" "${cli[@]}" init "${init_args[@]}"
fi
chmod 600 "$settings"
mkdir -p "$data_dir"

# --- master key ----------------------------------------------------------------------------
master_key="$("${cli[@]}" key rotate --master --if-missing --label master)"
if [ -n "$master_key" ]; then
  say "Master (pool) key: save it now, it is shown only once"
  echo "    $master_key"
  echo "    (a new one: codexpool key rotate --master, or the admin panel)"
fi

"${cli[@]}" check || echo "(codexpool check found something to fix; see above)"

# --- service -------------------------------------------------------------------------------
install_systemd_unit() {
  local unit=/etc/systemd/system/codexpool.service rw protect_home=yes homes
  if ! id codexpool >/dev/null 2>&1; then
    useradd --system --home-dir "$data_dir" --shell /usr/sbin/nologin codexpool
  fi
  homes="$("$venv/bin/python" -c 'import sys; from pathlib import Path; from codexpool.config import load_settings; print(load_settings(Path(sys.argv[1])).codex_homes)' "$settings")"
  mkdir -p "$homes"
  chown -R codexpool:codexpool "$data_dir" "$homes"
  rw="$data_dir"
  case "$homes/" in "$data_dir"/*) ;; *) rw="$rw $homes" ;; esac
  case "$REPO $data_dir $homes $venv" in
    */home/* | /root* | *" /root"*) protect_home=read-only ;;
  esac
  if [ "$protect_home" = read-only ]; then
    echo "note: the checkout or data lie under /home or /root; the service user must be able to"
    echo "      read them (a checkout under /opt is the usual place)"
  fi
  sed -e "s|@USER@|codexpool|g; s|@VENV@|$venv|g; s|@REPO@|$REPO|g" \
    -e "s|@DATA_DIR@|$data_dir|g; s|@RW_PATHS@|$rw|g; s|@PROTECT_HOME@|$protect_home|g" \
    "$REPO/systemd/codexpool.service" >"$unit"
  systemctl daemon-reload
  systemctl enable codexpool.service
  systemctl restart codexpool.service
  echo "installed $unit (logs: journalctl -u codexpool -f)"
}

if [ "$start" = 1 ]; then
  if [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ]; then
    say "Starting the systemd service"
    install_systemd_unit
    for _ in $(seq 1 60); do
      "$REPO/scripts/healthcheck.sh" --settings "$settings" --venv "$venv" --quiet && break
      sleep 1
    done
  else
    say "Starting in the background (no systemd here)"
    # An upgrade restarts the running server so the new code is what serves.
    "$REPO/scripts/stop.sh" --settings "$settings" --venv "$venv" || true
    "$REPO/scripts/start.sh" --settings "$settings" --venv "$venv"
  fi
  "$REPO/scripts/healthcheck.sh" --settings "$settings" --venv "$venv" || true
fi

# --- links ---------------------------------------------------------------------------------
port_now="$("$venv/bin/python" -c 'import sys; from pathlib import Path; from codexpool.config import load_settings; print(load_settings(Path(sys.argv[1])).port)' "$settings")"
host_ip="$(hostname -I 2>/dev/null | awk '{print $1}' || true)"
base="http://${host_ip:-127.0.0.1}:$port_now"
say "codexpool is installed"
echo "  panel:   $base/"
echo "  portal:  $base/openai"
echo "  API:     $base/api/openai/v1"
echo "  health:  $base/api/health"
echo "  settings $settings   data $data_dir"
if [ "$start" = 1 ] && ! [ -d /run/systemd/system ]; then
  echo "  stop: scripts/stop.sh --settings $settings   start: scripts/start.sh --settings $settings"
fi
