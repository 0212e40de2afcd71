#!/usr/bin/env bash
# Install the edge agent on a Raspberry Pi OS / Debian / Ubuntu machine (aarch64 or x86-64).
#
#   sudo deploy/install.sh                    # system install: /opt/edge-agent, systemd unit, user
#   deploy/install.sh --prefix /tmp/ea --no-apt --no-systemd   # private install (tests, trying out)
#
# What it does: apt packages (PortAudio, venv) when missing, a virtual environment with the agent
# and the TFLite runtime that works on this Python (ai-edge-litert, else tflite-runtime with
# numpy<2), the demo bundle as PREFIX/bundle when there is none (so the example config is valid
# and the service starts; replace it with your own), an example config (never overwrites yours),
# and a sandboxed systemd unit with its own user. Safe to run again (upgrades the agent in place).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/edge-agent
CONFIG_DIR=/etc/edge-agent
UNIT_DIR=/etc/systemd/system
DO_APT=1
DO_SYSTEMD=1
PYTHON=${PYTHON:-python3}

usage() { sed -n '2,12p' "$0"; echo "options: --prefix DIR --config-dir DIR --unit-dir DIR --no-apt --no-systemd --python EXE"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --config-dir) CONFIG_DIR=$2; shift 2 ;;
    --unit-dir) UNIT_DIR=$2; shift 2 ;;
    --no-apt) DO_APT=0; shift ;;
    --no-systemd) DO_SYSTEMD=0; shift ;;
    --python) PYTHON=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[install] %s\n' "$*"; }
arch=$(uname -m)
log "machine: $arch, python: $("$PYTHON" --version 2>&1), prefix: $PREFIX"

if [ "$DO_APT" = 1 ]; then
  source "$REPO/deploy/apt.sh"
  ensure_apt_packages log libportaudio2 libsndfile1 python3-venv alsa-utils  # libsndfile1: soundfile on armv7, which has no wheel
fi

mkdir -p "$PREFIX"
"$PYTHON" -m venv "$PREFIX/venv"
# pip's own exit status must survive the filter (pipefail): a failed install stops here,
# not later with a misleading "no TFLite runtime".
pip_q() {
  "$PREFIX/venv/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
}
pip_q install --upgrade pip
log "installing the agent (no TensorFlow) into $PREFIX/venv"
pip_q install "$REPO"

# The TFLite runtime: prove it by creating an interpreter, not by importing it.
probe() { "$PREFIX/venv/bin/python" -c "from edge_agent.embedder import select_runtime; print(select_runtime().name)" 2>/dev/null; }
if ! runtime=$(probe); then
  log "ai-edge-litert unusable here; trying tflite-runtime (needs numpy<2)"
  pip_q install 'tflite-runtime' 'numpy<2' 'ml_dtypes<0.6' || true
  runtime=$(probe) || { echo "error: no TFLite runtime works on $arch with $("$PYTHON" --version); install ai-edge-litert or tflite-runtime for this Python" >&2; exit 1; }
fi
log "TFLite runtime: $runtime"

cp "$REPO/README.md" "$PREFIX/README.md"
if [ ! -e "$PREFIX/bundle/current" ]; then
  cp -r "$REPO/edge_agent/demo/bundle" "$PREFIX/bundle"
  log "installed the demo bundle as $PREFIX/bundle (replace it with your own: docs/adaptation.md)"
fi
mkdir -p "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/agent.yaml" ]; then
  sed "s#/opt/edge-agent#$PREFIX#g" "$REPO/deploy/agent.example.yaml" > "$CONFIG_DIR/agent.yaml"
  log "wrote example config $CONFIG_DIR/agent.yaml (edit device, section, mqtt)"
  "$PREFIX/venv/bin/edge-agent" config check "$CONFIG_DIR/agent.yaml" >/dev/null
else
  log "kept existing config $CONFIG_DIR/agent.yaml"
  "$PREFIX/venv/bin/edge-agent" config check "$CONFIG_DIR/agent.yaml" >/dev/null \
    || log "warning: $CONFIG_DIR/agent.yaml does not pass 'edge-agent config check' (see above)"
fi
mkdir -p "$UNIT_DIR"
sed -e "s#/opt/edge-agent#$PREFIX#g" -e "s#/etc/edge-agent#$CONFIG_DIR#g" \
  "$REPO/deploy/systemd/edge-agent.service" > "$UNIT_DIR/edge-agent.service"
log "wrote $UNIT_DIR/edge-agent.service"

if [ "$DO_SYSTEMD" = 1 ]; then
  id edge-agent >/dev/null 2>&1 || useradd --system --user-group --home /var/lib/edge-agent --shell /usr/sbin/nologin --groups audio edge-agent
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now edge-agent.service
    log "service started: journalctl -u edge-agent -f"
  else
    log "systemd is not running here; start the agent with: $PREFIX/venv/bin/edge-agent run --config $CONFIG_DIR/agent.yaml"
  fi
fi
"$PREFIX/venv/bin/edge-agent" --help >/dev/null
log "done: $PREFIX/venv/bin/edge-agent"
