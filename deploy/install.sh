#!/usr/bin/env bash
# Install the edge agent on a Raspberry Pi OS / Debian / Ubuntu machine (aarch64 or x86-64;
# 32-bit ARM is refused in one line: no TFLite runtime has wheels for it, deploy/platform.sh).
#
#   sudo deploy/install.sh                    # system install: /opt/edge-agent, systemd unit, user
#   deploy/install.sh --prefix /tmp/ea --config-dir /tmp/ea/etc --no-apt --no-systemd
#                                             # private install (tests, trying out)
#
# What it does: apt packages (PortAudio, venv) when missing, a virtual environment with the agent
# and the TFLite runtime that works on this Python (ai-edge-litert, else tflite-runtime with
# numpy<2), the demo bundle as PREFIX/bundle when there is none (so the example config is valid
# and the service starts; replace it with your own), an example config (never overwrites yours),
# and a sandboxed systemd unit with its own user. Safe to run again (upgrades the agent in place).
# --no-systemd: no user, no service, and no unit file unless --unit-dir names where to put one.
# Paths: absolute, of letters, digits and / . _ + - only (checked before anything is done).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/edge-agent
CONFIG_DIR=/etc/edge-agent
UNIT_DIR=""  # default: /etc/systemd/system, unless --no-systemd
DO_APT=1
DO_SYSTEMD=1
PYTHON=${PYTHON:-python3}

usage() { sed -n '2,15p' "$0"; echo "options: --prefix DIR --config-dir DIR --unit-dir DIR --no-apt --no-systemd --python EXE"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix|--config-dir|--unit-dir|--python)
      [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --prefix) PREFIX=$2 ;;
        --config-dir) CONFIG_DIR=$2 ;;
        --unit-dir) UNIT_DIR=$2 ;;
        --python) PYTHON=$2 ;;
      esac
      shift 2 ;;
    --no-apt) DO_APT=0; shift ;;
    --no-systemd) DO_SYSTEMD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$UNIT_DIR" ] && [ "$DO_SYSTEMD" = 1 ]; then
  UNIT_DIR=/etc/systemd/system
fi

# The paths go into the unit (ExecStart, ReadWritePaths) and the example config: a space splits
# ExecStart, '%' is a systemd specifier, '#' starts a YAML comment, a quote or '&' or '\' means
# something to whatever reads them next. So an allow-list, checked before anything is installed.
check_path() {  # OPTION VALUE
  case "$2" in
    /*) ;;
    *) echo "error: $1: expected an absolute path, got '$2'" >&2; exit 2 ;;
  esac
  if [[ ! "$2" =~ ^[A-Za-z0-9/._+-]+$ ]]; then
    echo "error: $1: '$2' has characters other than letters, digits and / . _ + - (a space, '&', '#', '%' or a quote would break the unit or the config); choose another path" >&2
    exit 2
  fi
}
check_path --prefix "$PREFIX"
check_path --config-dir "$CONFIG_DIR"
[ -z "$UNIT_DIR" ] || check_path --unit-dir "$UNIT_DIR"

log() { printf '[install] %s\n' "$*"; }

# TEMPLATE -> DEST with each FROM replaced by TO (literal strings, no sed: a path is never read
# as a pattern or a command), written to a temp file and renamed, so a failure never leaves a
# half-written (or empty) file under DEST that a later run would keep.
render() {  # TEMPLATE DEST FROM TO [FROM TO ...]
  local template=$1 dest=$2; shift 2
  "$PYTHON" - "$template" "$dest.tmp" "$@" <<'PY'
import sys
template, dest, *pairs = sys.argv[1:]
text = open(template, encoding="utf-8").read()
for old, new in zip(pairs[::2], pairs[1::2]):
    text = text.replace(old, new)
with open(dest, "w", encoding="utf-8") as f:
    f.write(text)
PY
  mv -f "$dest.tmp" "$dest"
}
arch=$(uname -m)
log "machine: $arch, python: $("$PYTHON" --version 2>&1), prefix: $PREFIX"
source "$REPO/deploy/platform.sh"
require_64bit "$PYTHON" || exit 2  # one line on 32-bit Raspberry Pi OS, before anything is installed

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

# The TFLite runtime: the agent's own probe (edge_agent.runtime.probe) tries each runtime in a
# child process on the demo model and takes the first that neither crashes nor computes other
# numbers than the model's self-test expects (exit 1: none runs; 3: one runs, wrong numbers).
probe() { "$PREFIX/venv/bin/python" -m edge_agent.runtime.probe 2>"$PREFIX/.probe-error"; }
probe_rc=0
runtime=$(probe) || probe_rc=$?
if [ "$probe_rc" != 0 ]; then
  log "ai-edge-litert unusable here; trying tflite-runtime (needs numpy<2)"
  pip_q install 'tflite-runtime' 'numpy<2' 'ml_dtypes<0.6' || true
  probe_rc=0
  runtime=$(probe) || probe_rc=$?
fi
why=$(cat "$PREFIX/.probe-error" 2>/dev/null); rm -f "$PREFIX/.probe-error"
case "$probe_rc" in
  0) log "TFLite runtime: $runtime" ;;
  3) log "warning: ${why#error: }"
     log "the agent will refuse to score until tflite: in $CONFIG_DIR/agent.yaml says so (edge-agent check tries it)" ;;
  *) echo "error: no TFLite runtime works on $arch with $("$PYTHON" --version) (${why#error: })" >&2; exit 1 ;;
esac

cp "$REPO/README.md" "$PREFIX/README.md"
if [ ! -e "$PREFIX/bundle/current" ]; then
  cp -r "$REPO/edge_agent/demo/bundle" "$PREFIX/bundle"
  log "installed the demo bundle as $PREFIX/bundle (replace it with your own: docs/adaptation.md)"
fi
mkdir -p "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/agent.yaml" ]; then
  render "$REPO/deploy/agent.example.yaml" "$CONFIG_DIR/agent.yaml" /opt/edge-agent "$PREFIX"
  log "wrote example config $CONFIG_DIR/agent.yaml (edit device, section, mqtt)"
  "$PREFIX/venv/bin/edge-agent" config check "$CONFIG_DIR/agent.yaml" >/dev/null
else
  log "kept existing config $CONFIG_DIR/agent.yaml"
  "$PREFIX/venv/bin/edge-agent" config check "$CONFIG_DIR/agent.yaml" >/dev/null \
    || log "warning: $CONFIG_DIR/agent.yaml does not pass 'edge-agent config check' (see above)"
fi
if [ -n "$UNIT_DIR" ]; then
  mkdir -p "$UNIT_DIR"
  render "$REPO/deploy/systemd/edge-agent.service" "$UNIT_DIR/edge-agent.service" \
    /opt/edge-agent "$PREFIX" /etc/edge-agent "$CONFIG_DIR"
  log "wrote $UNIT_DIR/edge-agent.service"
else
  log "--no-systemd: no unit file written (--unit-dir DIR writes one there)"
fi

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
