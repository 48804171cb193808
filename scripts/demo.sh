#!/usr/bin/env bash
# The demo command: set-up, then `badbuzz demo` (services, training, worker, replay).
set -euo pipefail
cd "$(dirname "$0")/.."
# The base install: the demo trains and serves TF-IDF, so neither TensorFlow nor torch.
bash scripts/bootstrap.sh
exec .venv/bin/badbuzz demo "$@"
