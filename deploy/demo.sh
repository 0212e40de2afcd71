#!/usr/bin/env bash
# The README's first command: install the edge agent (no TensorFlow) and run `edge-agent demo`.
#
#   bash deploy/demo.sh                        # shipped audio of a machine turning faulty, 10x
#   bash deploy/demo.sh --fast                 # any `edge-agent demo` option is passed on
#   bash deploy/demo.sh --mqtt-host localhost  # also publish scores and the alarm over MQTT
#
# Installs what is missing, once: apt libportaudio2 + python3-venv (Debian / Raspberry Pi OS;
# skipped with EDGE_AGENT_NO_APT=1), then a virtual environment (EDGE_AGENT_VENV, default
# .venv-agent in the checkout) with the agent installed editable and a TFLite runtime that works
# on this Python. Runs again in seconds: the install is redone only when pyproject.toml changed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${EDGE_AGENT_VENV:-$REPO/.venv-agent}
PYTHON=${PYTHON:-python3}
log() { printf '[demo] %s\n' "$*" >&2; }

if [ "${EDGE_AGENT_NO_APT:-0}" != 1 ] && command -v dpkg >/dev/null 2>&1; then
  source "$REPO/deploy/apt.sh"
  ensure_apt_packages log libportaudio2 python3-venv
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: the agent needs Python >= 3.10 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 2; }
source "$REPO/deploy/platform.sh"
require_64bit "$PYTHON" || exit 2

want=$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/edge-agent" ] || [ "$(cat "$VENV/.edge-agent-installed" 2>/dev/null)" != "$want" ]; then
  log "installing the agent (no TensorFlow) into $VENV (once; about a minute)"
  "$PYTHON" -m venv "$VENV"
  printf '*\n' > "$VENV/.gitignore"  # keep the venv out of `git status`
  pip_q() {
    # PYTHONWARNINGS: setuptools' editable-install banners are noise to a first-time user.
    PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 \
      | { grep -v '^WARNING: Location' || true; }
  }
  pip_q install --upgrade pip
  pip_q install -e "$REPO"
  # The TFLite runtime: each tried in a child process on the demo model, the agent's own probe
  # (edge_agent.runtime.probe): a runtime that crashes or computes wrong numbers is no answer.
  # Exit 1: none runs here, so try tflite-runtime; exit 3: one runs but fails the self-test
  # on this CPU, which `edge-agent demo` then says in one line (with what to do).
  probe_rc=0
  "$VENV/bin/python" -m edge_agent.runtime.probe >/dev/null 2>&1 || probe_rc=$?
  if [ "$probe_rc" != 0 ]; then
    log "ai-edge-litert unusable here; trying tflite-runtime (needs numpy<2)"
    pip_q install 'tflite-runtime' 'numpy<2' 'ml_dtypes<0.6' || true
    probe_rc=0
    why=$("$VENV/bin/python" -m edge_agent.runtime.probe 2>&1 >/dev/null) || probe_rc=$?
    if [ "$probe_rc" = 1 ]; then
      echo "${why:-error: no TFLite runtime works} (with $("$PYTHON" --version 2>&1) on $(uname -m); see docs/deploy.md#troubleshooting)" >&2
      exit 1
    fi
  fi
  echo "$want" > "$VENV/.edge-agent-installed"
fi

exec "$VENV/bin/edge-agent" demo "$@"
