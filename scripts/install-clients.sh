#!/usr/bin/env bash
# Install the pinned clients of the compatibility suite (tests/clients) into git-ignored folders:
#   Python clients: one venv each, tests/clients/.venvs/<name>, from the full lock
#                   tests/clients/requirements/<name>.txt (installed --no-deps, so no resolver
#                   runs and no client's dependencies can clash with ours or another client's);
#   Node clients:   tests/clients/node_modules from tests/clients/package-lock.json (npm ci).
# Idempotent: a stamp holding the lock's checksum skips what is already installed. A client whose
# install fails (offline, say) is reported and left out; its tests then skip saying so. Exit 0
# unless nothing at all could be installed.
set -uo pipefail
cd "$(dirname "$0")/../tests/clients" || exit 1
export PIP_DISABLE_PIP_VERSION_CHECK=1
ok=0
failed=()

install_python() {
  local name=$1 lock=requirements/$1.txt venv=.venvs/$1
  local want stamp=.venvs/$1/.codexpool-lock.sha256
  want=$(sha256sum "$lock" | awk '{print $1}')
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    echo "client $name already installed: tests/clients/$venv"
    return 0
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" || return 1
  "$venv/bin/pip" install -q --no-deps -r "$lock" || { rm -rf "$venv"; return 1; }
  echo "$want" >"$stamp"
  echo "installed client $name: tests/clients/$venv"
}

install_node() {
  local want stamp=node_modules/.codexpool-lock.sha256
  want=$(sha256sum package-lock.json | awk '{print $1}')
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "node clients already installed: tests/clients/node_modules"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || { echo "npm is missing (apt-get install nodejs npm)" >&2; return 1; }
  npm ci --no-audit --no-fund --loglevel=error || return 1
  echo "$want" >"$stamp"
  echo "installed node clients: tests/clients/node_modules"
}

# The venvs install side by side: each pip spends most of its time waiting on the index.
pids=()
names=()
for lock in requirements/*.txt; do
  name=$(basename "$lock" .txt)
  install_python "$name" &
  pids+=($!)
  names+=("$name")
done
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then ok=$((ok + 1)); else failed+=("${names[$i]}"); fi
done
if install_node; then ok=$((ok + 1)); else failed+=(node); fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "could not install client(s): ${failed[*]} (offline?): their tests in tests/clients skip" >&2
fi
[ "$ok" -gt 0 ]
