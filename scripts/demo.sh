#!/usr/bin/env bash
# The demo command: set-up, then `badbuzz demo` (services, training, worker, replay).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/badbuzz demo "$@"
