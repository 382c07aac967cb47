#!/usr/bin/env bash
# Install the pinned axe-core of tests/axe (package-lock.json) into tests/axe/node_modules for
# the accessibility checks of the browser tests (idempotent: a stamp of the lock skips `npm ci`).
set -euo pipefail
cd "$(dirname "$0")/../tests/axe"
stamp=node_modules/.codexpool-lock.sha256
want=$(sha256sum package-lock.json | awk '{print $1}')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f node_modules/axe-core/axe.min.js ]; then
  echo "axe-core already installed: tests/axe/node_modules/axe-core"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required for the accessibility checks (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "installed axe-core $(node -p 'require("./node_modules/axe-core/package.json").version'): tests/axe/node_modules/axe-core"
