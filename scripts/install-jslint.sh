#!/usr/bin/env bash
# Install the pinned Biome of tools/jslint (package-lock.json) into tools/jslint/node_modules for
# the lint + format check of web/ (idempotent: a stamp of the lock skips `npm ci`).
set -euo pipefail
cd "$(dirname "$0")/../tools/jslint"
stamp=node_modules/.codexpool-lock.sha256
want=$(sha256sum package-lock.json | awk '{print $1}')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/biome ]; then
  echo "biome already installed: tools/jslint/node_modules/.bin/biome"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required for the JS lint of web/ (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "installed biome $(node_modules/.bin/biome --version | awk '{print $2}'): tools/jslint/node_modules/.bin/biome"
