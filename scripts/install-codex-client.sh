#!/usr/bin/env bash
# Install the pinned Codex CLI used as an API *client* of the gateway (tests/clients/
# test_codex_cli_client.py) into tests/clients/.codex-client (git-ignored, idempotent). This is
# not the codex that serves the pool (.codex-cli, scripts/install-codex.sh): it is the newer
# CLI a user points at the gateway as its model provider. A failed install (offline) is not
# fatal: the test then skips with a message.
set -uo pipefail
cd "$(dirname "$0")/../tests/clients" || exit 1
VERSION="${CODEX_CLIENT_VERSION:-0.171.0}"
bin=$(find .codex-client/node_modules/@openai -path "*/vendor/*/bin/codex" -type f 2>/dev/null | head -n 1)
if [ -n "$bin" ] && [ "$("$bin" --version 2>/dev/null | awk '{print $2}')" = "$VERSION" ]; then
  echo "codex client $VERSION already installed: tests/clients/$bin"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm missing: the Codex CLI client test will skip" >&2
  exit 0
fi
mkdir -p .codex-client
if ! npm install --prefix .codex-client --no-audit --no-fund --loglevel=error "@openai/codex@${VERSION}"; then
  echo "could not install @openai/codex@${VERSION} (offline?): the Codex CLI client test will skip" >&2
  exit 0
fi
bin=$(find .codex-client/node_modules/@openai -path "*/vendor/*/bin/codex" -type f | head -n 1)
echo "installed codex client $("$bin" --version): tests/clients/$bin"
