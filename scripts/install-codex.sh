#!/usr/bin/env bash
# Install the pinned @openai/codex npm package into <repo>/.codex-cli (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
CODEX_VERSION="${CODEX_VERSION:-0.169.0}"
current=""
bin=$(find .codex-cli/node_modules/@openai -path "*/vendor/*/bin/codex" -type f 2>/dev/null | head -n 1 || true)
if [ -n "$bin" ]; then current=$("$bin" --version 2>/dev/null | awk '{print $2}'); fi
if [ "$current" = "$CODEX_VERSION" ]; then
  echo "codex $current already installed: $bin"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required to install the codex CLI (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
fi
mkdir -p .codex-cli
npm install --prefix .codex-cli --no-audit --no-fund --loglevel=error "@openai/codex@${CODEX_VERSION}"
bin=$(find .codex-cli/node_modules/@openai -path "*/vendor/*/bin/codex" -type f | head -n 1)
echo "installed $("$bin" --version): $bin"
