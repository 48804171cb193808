#!/usr/bin/env bash
# The test command: set-up, real services, the whole suite. Services this script started
# are stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/audit.sh
started=0
if ! .venv/bin/badbuzz services status >/dev/null 2>&1; then
  .venv/bin/badbuzz services up
  started=1
fi
trap '[ "$started" = 1 ] && .venv/bin/badbuzz services down' EXIT
.venv/bin/python -m pytest "$@"
