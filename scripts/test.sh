#!/usr/bin/env bash
# The test command: set-up, real services, the whole suite. Services this script started
# are stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# The suite trains every model family and needs its own tooling: all extras.
bash scripts/bootstrap.sh dev,gru,transformer
echo "==> ruff (lint, configured in pyproject.toml)"
.venv/bin/ruff check .
bash scripts/audit.sh
started=0
if ! .venv/bin/badbuzz services status >/dev/null 2>&1; then
  .venv/bin/badbuzz services up
  started=1
fi
trap '[ "$started" = 1 ] && .venv/bin/badbuzz services down' EXIT
.venv/bin/python -m pytest "$@"
