#!/usr/bin/env bash
# Install everything the test suite needs (apt + pip into .venv) and run it.
# This is the README's test command and exactly what CI runs (.ci/run).
#   bash deploy/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libportaudio2 libasound2-plugins alsa-utils pulseaudio mosquitto mosquitto-clients openssl systemd prometheus-node-exporter)
source deploy/apt.sh
ensure_apt_packages echo "${APT_PACKAGES[@]}"

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import edge_agent, model_build, tensorflow, ai_edge_litert" >/dev/null 2>&1 \
  || { echo "error: the test environment did not install (see pip output above)"; exit 1; }

# the same steps a developer runs one by one (script/lint, script/test)
bash script/lint
exec bash script/test "$@"
