#!/usr/bin/env bash
# Run every static check CI runs: ruff (lint + format) and mypy over the Python, Biome (lint +
# format) over web/. `scripts/lint.sh --fix` applies the fixes ruff and Biome can make safely.
#   needs .venv (pip install -e '.[test]') and scripts/install-jslint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
biome=tools/jslint/node_modules/.bin/biome
[ -x "$biome" ] || { echo "biome is not installed: run scripts/install-jslint.sh" >&2; exit 1; }
if [ "${1:-}" = "--fix" ]; then
  .venv/bin/ruff check --fix codexpool tests bench
  .venv/bin/ruff format codexpool tests bench
  "$biome" check --write --config-path tools/jslint web
fi
.venv/bin/ruff check codexpool tests bench
.venv/bin/ruff format --check codexpool tests bench
.venv/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml
"$biome" ci --config-path tools/jslint web
