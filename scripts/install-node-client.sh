#!/usr/bin/env bash
# Install the pinned openai Node SDK of tests/node (package-lock.json) into tests/node/node_modules
# for the Node client test (idempotent: a stamp holding the lock's checksum skips `npm ci`).
set -euo pipefail
cd "$(dirname "$0")/../tests/node"
stamp=node_modules/.codexpool-lock.sha256
want=$(sha256sum package-lock.json | awk '{print $1}')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f node_modules/openai/package.json ]; then
  echo "node openai SDK already installed: tests/node/node_modules/openai"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required for the Node client test (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
version=$(node -p 'require("./node_modules/openai/package.json").version')
echo "installed node openai SDK $version (node $(node --version)): tests/node/node_modules/openai"
