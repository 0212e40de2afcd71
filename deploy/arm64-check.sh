#!/usr/bin/env bash
# The arm64 check: run `deploy/demo.sh` in an emulated arm64 Debian Bookworm root (what Raspberry
# Pi OS 64-bit is built on) and compare every window's score with the x86 run of this checkout.
#
#   bash deploy/arm64-check.sh           # .ci/run calls it after the tests (needs root)
#   ARM64_CPUS="cortex-a72" bash deploy/arm64-check.sh
#
# Nothing here has ever run on a real Pi; this is the next best proof: the same wheels pip
# installs on a Pi, the same demo.sh, under qemu-user for a Pi 4 CPU (cortex-a72) and a Pi 5 CPU
# (cortex-a76), each with a matching /proc/cpuinfo (an x86 cpuinfo crashes XNNPACK's CPU probe,
# which no Pi ever shows). A window's score may differ from x86 by the bundle's own quantisation
# tolerance (manifest.json: quantisation.embedding_tolerance), no more, and the alarm verdicts
# must be the same. Emulation is for correctness, never for timing (edge-agent check --bench).
#
# The root (about 330 MB, ~6 min to build) is cached in ARM64_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/listening-monitor) together with the agent's venv inside it, and
# rebuilt only when the recipe below changes. Needs: root, network to Debian's archive and PyPI,
# qemu-user-static + binfmt-support + mmdebstrap + arch-test (installed when missing). Where
# binfmt_misc cannot be mounted (an unprivileged container) it says so in one line and exits 0.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/listening-monitor}
CPUS=${ARM64_CPUS:-cortex-a72 cortex-a76}
ROOT=$CACHE/arm64-bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,libportaudio2,libsndfile1,git
log() { printf '[arm64] %s\n' "$*" >&2; }
started=$(date +%s)

# --- binfmt: the one reason to skip ------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "arm64 check skipped: not root, so binfmt_misc cannot be mounted for qemu-aarch64"
  exit 0
fi
source "$REPO/deploy/apt.sh"
ensure_apt_packages log qemu-user-static binfmt-support mmdebstrap arch-test
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
    echo "arm64 check skipped: binfmt_misc cannot be mounted here (mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc failed: no privilege)"
    exit 0
  }
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if ! arch-test arm64 >/dev/null 2>&1; then
  echo "arm64 check skipped: binfmt_misc is mounted but qemu-aarch64 cannot be registered (arch-test arm64 fails)"
  exit 0
fi

# --- the cached root ---------------------------------------------------------------------------
# The apt sources: Debian's mirror as this machine's own apt uses it (deb822 or one-line format),
# so the root is built from wherever this machine is allowed to fetch packages.
mirror() {  # SUITE_KIND: debian | debian-security
  local want=$1 uri
  uri=$(grep -hoE "(URIs:|deb)[[:space:]]+[^[:space:]]*/$want/?([[:space:]]|\$)" \
          /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/$want}"
}
DEB=$(mirror debian); SEC=$(mirror debian-security)
SOURCES=("deb ${DEB%/} bookworm main" "deb ${DEB%/} bookworm-updates main"
         "deb ${SEC%/} bookworm-security main")
RECIPE="v1 bookworm arm64 apt $PACKAGES ${SOURCES[*]}"

build_root() {
  log "building the arm64 Bookworm root in $ROOT (once; about 6 minutes)"
  rm -rf "$ROOT.tmp"
  mkdir -p "$CACHE"
  mmdebstrap --quiet --arch=arm64 --variant=apt --include="$PACKAGES" bookworm "$ROOT.tmp" \
    "${SOURCES[@]}" >"$CACHE/mmdebstrap.log" 2>&1 \
    || { echo "error: mmdebstrap failed (last lines of $CACHE/mmdebstrap.log):" >&2
         tail -n 5 "$CACHE/mmdebstrap.log" >&2; exit 1; }
  # This machine's extra CA certificates (a proxy's), trusted inside too.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT.tmp/usr/local/share/ca-certificates/"
    chroot "$ROOT.tmp" update-ca-certificates >/dev/null 2>&1
  fi
  echo "$RECIPE" > "$ROOT.tmp/.recipe"
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
}
if [ "$(cat "$ROOT/.recipe" 2>/dev/null)" != "$RECIPE" ]; then
  build_root
else
  log "reusing the arm64 root in $ROOT"
fi
[ "${ARM64_BUILD_ONLY:-0}" = 1 ] && exit 0

# --- this checkout inside, the mounts -----------------------------------------------------------
PROJ=/opt/listening-monitor
MOUNTS=()
cleanup() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # SRC DEST [mount options]
  mount "${@:3}" "$1" "$2"; MOUNTS+=("$2")
}
rm -rf "$ROOT$PROJ"; mkdir -p "$ROOT$PROJ"
# the tracked files and the new ones git does not ignore (a fresh CI clone: the commit)
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
   | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
   | tar --null -T - -cf -) | tar -xf - -C "$ROOT$PROJ"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
bind proc "$ROOT/proc" -t proc
bind sysfs "$ROOT/sys" -t sysfs
bind /dev "$ROOT/dev" --bind
bind /dev/pts "$ROOT/dev/pts" --bind
bind /dev/shm "$ROOT/dev/shm" --bind
cp "$REPO/deploy/arm64/cpuinfo.py" "$ROOT/tmp/cpuinfo.py"

inside() {  # CPU COMMAND: run COMMAND in the root as that CPU, with a cpuinfo to match
  # (HOST_CPUINFO=1: with this machine's x86 /proc/cpuinfo, as a bare qemu-user run shows it)
  local cpu=$1; shift
  if [ "${HOST_CPUINFO:-0}" != 1 ]; then
    QEMU_CPU=$cpu chroot "$ROOT" python3 /tmp/cpuinfo.py "$cpu" > "$ROOT/tmp/cpuinfo-$cpu"
    mount --bind "$ROOT/tmp/cpuinfo-$cpu" "$ROOT/proc/cpuinfo"
  fi
  local rc=0
  chroot "$ROOT" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    QEMU_CPU="$cpu" EDGE_AGENT_VENV="${VENV_INSIDE:-/opt/venv-agent}" TF_CPP_MIN_LOG_LEVEL=2 \
    bash -c "cd $PROJ && $*" || rc=$?
  [ "${HOST_CPUINFO:-0}" = 1 ] || umount "$ROOT/proc/cpuinfo"
  return $rc
}
if [ -n "${ARM64_RUN:-}" ]; then  # a developer's command instead of the check, per CPU
  for cpu in $CPUS; do log "$cpu: $ARM64_RUN"; inside "$cpu" "$ARM64_RUN"; done
  exit 0
fi
