#!/usr/bin/env bash
# The ARM check: run `deploy/demo.sh` in an emulated arm64 Debian Bookworm root (what Raspberry
# Pi OS 64-bit is built on) and compare every window's score with the x86 run of this checkout;
# then show that a 32-bit (armhf) root is refused in one line.
#
#   bash deploy/arm64-check.sh                  # .ci/run calls it after the tests (needs root)
#   ARM64_CPUS=cortex-a72 ARM64_ARMHF=0 bash deploy/arm64-check.sh     # a quicker look
#   ARM64_RUN='bash deploy/demo.sh' bash deploy/arm64-check.sh         # any command, per CPU
#
# What it runs, in the cached root with this checkout copied in:
# 1. `bash deploy/demo.sh --fast --json` and `edge-agent check` as a Pi 4 (QEMU_CPU=cortex-a72)
#    and a Pi 5 (cortex-a76), each with the /proc/cpuinfo that CPU's kernel would show
#    (deploy/arm64/cpuinfo.py); every window's score within the bundle's own tolerance of the
#    x86 run, same verdicts, same alarm window (deploy/arm64/compare.py);
# 2. QEMU's default CPU model (`max`: SVE, SME, bf16, i8mm), whose XNNPACK kernels compute other
#    numbers: `edge-agent check` must refuse it in one line, and pass with --no-xnnpack;
# 3. the host's x86 /proc/cpuinfo (a bare qemu-user run), on which ai-edge-litert segfaults:
#    `edge-agent check` must say so in one line instead of dying;
# 4. an armhf root: deploy/install.sh and deploy/demo.sh must refuse 32-bit in one line.
# Emulation is for correctness, never for timing (`edge-agent check --bench` on the device).
#
# The roots (arm64 ~330 MB, ~4-6 min to build; armhf ~150 MB) are cached in ARM64_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/listening-monitor), the arm64 one with the agent's venv
# inside, and rebuilt only when their recipe changes. Needs root, network to Debian's archive
# and PyPI, qemu-user-static + binfmt-support + mmdebstrap + arch-test (installed when
# missing). Where binfmt_misc cannot be mounted (not root, an unprivileged container) it says
# so in ONE line and exits 0.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/listening-monitor}
CPUS=${ARM64_CPUS:-cortex-a72 cortex-a76}
WRONG_CPU=${ARM64_WRONG_CPU-max}  # empty: skip part 2
PROJ=/opt/listening-monitor       # the checkout's copy inside a root
log() { printf '[arm64] %s\n' "$*" >&2; }
started=$(date +%s)

# --- binfmt: the one reason to skip ------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "arm64 check skipped: not root, so binfmt_misc cannot be mounted for qemu-aarch64"
  exit 0
fi
source "$REPO/deploy/apt.sh"
ensure_apt_packages log qemu-user-static binfmt-support mmdebstrap arch-test
if [ ! -e /proc/sys/fs/binfmt_misc/status ] \
    && ! mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
  echo "arm64 check skipped: binfmt_misc cannot be mounted here (mount -t binfmt_misc refused: no privilege for it in this container)"
  exit 0
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
if ! arch-test arm64 >/dev/null 2>&1; then
  echo "arm64 check skipped: binfmt_misc is mounted but qemu-aarch64 cannot be registered (arch-test arm64 fails)"
  exit 0
fi

# --- the cached roots --------------------------------------------------------------------------
# Debian's mirror as this machine's own apt uses it (deb822 or one-line sources), so the roots
# come from wherever this machine may fetch packages.
mirror() {  # debian | debian-security
  local uri
  uri=$(grep -hoE "(URIs:|deb)[[:space:]]+[^[:space:]]*/$1/?([[:space:]]|\$)" \
          /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/$1}"
}
DEB=$(mirror debian); SEC=$(mirror debian-security)
SOURCES=("deb ${DEB%/} bookworm main" "deb ${DEB%/} bookworm-updates main"
         "deb ${SEC%/} bookworm-security main")

root_for() {  # ARCH PACKAGES -> prints the root's path; builds it when missing or stale
  local arch=$1 packages=$2 root="$CACHE/$1-bookworm" recipe
  recipe="v1 bookworm $arch apt $packages ${SOURCES[*]}"
  if [ "$(cat "$root/.recipe" 2>/dev/null)" = "$recipe" ]; then
    log "reusing the $arch root in $root"
  else
    log "building the $arch Bookworm root in $root (once; a few minutes)"
    rm -rf "$root.tmp"; mkdir -p "$CACHE"
    mmdebstrap --quiet --arch="$arch" --variant=apt --include="$packages" bookworm "$root.tmp" \
      "${SOURCES[@]}" >"$CACHE/mmdebstrap-$arch.log" 2>&1 \
      || { echo "error: mmdebstrap $arch failed (last lines of $CACHE/mmdebstrap-$arch.log):" >&2
           tail -n 5 "$CACHE/mmdebstrap-$arch.log" >&2; exit 1; }
    # this machine's extra CA certificates (a proxy's) are trusted inside too
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$root.tmp/usr/local/share/ca-certificates/"
      chroot "$root.tmp" update-ca-certificates >/dev/null 2>&1 || true
    fi
    echo "$recipe" > "$root.tmp/.recipe"
    rm -rf "$root"; mv "$root.tmp" "$root"
  fi
  echo "$root"
}

MOUNTS=()
WORK=$(mktemp -d)
cleanup() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

enter() {  # ROOT: this checkout copied in, network configuration, /proc /sys /dev mounted
  local root=$1
  rm -rf "${root:?}$PROJ"; mkdir -p "$root$PROJ"
  # the tracked files and the new ones git does not ignore (in CI's fresh clone: the commit)
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$root$PROJ"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # pip's global configuration only: this machine's others point at local x86-only wheels
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/pip.conf"; fi
  mount -t proc proc "$root/proc"; MOUNTS+=("$root/proc")
  mount -t sysfs sysfs "$root/sys"; MOUNTS+=("$root/sys")
  local d
  for d in dev dev/pts dev/shm; do mount --bind "/$d" "$root/$d"; MOUNTS+=("$root/$d"); done
}

inside() {  # ROOT CPU COMMAND: COMMAND in the checkout's copy as that CPU, with its cpuinfo
  # (HOST_CPUINFO=1: with this machine's x86 /proc/cpuinfo, as a bare qemu-user run shows it)
  local root=$1 cpu=$2 rc=0; shift 2
  if [ "${HOST_CPUINFO:-0}" != 1 ]; then
    QEMU_CPU=$cpu chroot "$root" python3 - "$cpu" < "$REPO/deploy/arm64/cpuinfo.py" \
      > "$root/tmp/cpuinfo-$cpu"
    mount --bind "$root/tmp/cpuinfo-$cpu" "$root/proc/cpuinfo"
  fi
  chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    QEMU_CPU="$cpu" EDGE_AGENT_VENV=/opt/venv-agent TF_CPP_MIN_LOG_LEVEL=2 \
    bash -c "cd $PROJ && $*" || rc=$?
  if [ "${HOST_CPUINFO:-0}" != 1 ]; then umount "$root/proc/cpuinfo"; fi
  return $rc
}

ROOT=$(root_for arm64 python3,python3-venv,python3-pip,ca-certificates,libportaudio2,libsndfile1,git)
[ "${ARM64_BUILD_ONLY:-0}" = 1 ] && exit 0
enter "$ROOT"
if [ -n "${ARM64_RUN:-}" ]; then  # a developer's command instead of the check, per CPU
  for cpu in $CPUS; do log "$cpu: $ARM64_RUN"; inside "$ROOT" "$cpu" "$ARM64_RUN"; done
  exit 0
fi
failed=0
fail() { log "FAILED: $*"; failed=1; }
one_line() {  # FILE EXPECTED_EXIT GOT_EXIT WORDS: the command failed as it must, in one line
  [ "$3" = "$2" ] && [ "$(wc -l < "$1")" = 1 ] && grep -qF -- "$4" "$1"
}

# --- the x86 run: what every window must score ---------------------------------------------------
MANIFEST="$REPO/edge_agent/demo/bundle/versions/$(tr -d '[:space:]' < "$REPO/edge_agent/demo/bundle/current")/manifest.json"
if [ -x "$REPO/.venv/bin/edge-agent" ]; then  # CI: the test environment is there already
  "$REPO/.venv/bin/edge-agent" demo --fast --json > "$WORK/x86.jsonl"
else
  bash "$REPO/deploy/demo.sh" --fast --json > "$WORK/x86.jsonl"
fi
log "x86: $(grep -c '"kind":"score"' "$WORK/x86.jsonl") windows scored"

# --- 1. arm64 as a Pi 4 and a Pi 5: deploy/demo.sh, edge-agent check, every window vs x86 --------
runs=()
for cpu in $CPUS; do
  log "$cpu: bash deploy/demo.sh --fast --json, then edge-agent check"
  if inside "$ROOT" "$cpu" "bash deploy/demo.sh --fast --json > /tmp/demo-$cpu.jsonl \
                            && /opt/venv-agent/bin/edge-agent check"; then
    runs+=("$cpu=$ROOT/tmp/demo-$cpu.jsonl")
  else
    fail "$cpu: deploy/demo.sh or edge-agent check (above)"
  fi
done
if [ ${#runs[@]} -gt 0 ]; then
  python3 "$REPO/deploy/arm64/compare.py" "$MANIFEST" "$WORK/x86.jsonl" "${runs[@]}" \
    || fail "a CPU's scores differ from x86 (above)"
fi

# --- 2. a CPU whose XNNPACK kernels compute other numbers: refused in one line ---------------------
if [ -n "$WRONG_CPU" ]; then
  rc=0; inside "$ROOT" "$WRONG_CPU" "/opt/venv-agent/bin/edge-agent check" > "$WORK/out" 2>&1 || rc=$?
  if one_line "$WORK/out" 2 "$rc" "self-test failed: ai_edge_litert"; then
    log "$WRONG_CPU: refused, as it must be: $(cut -c1-330 "$WORK/out")..."
  else
    fail "$WRONG_CPU: expected exit 2 and one 'self-test failed' line, got exit $rc:"; cat "$WORK/out" >&2
  fi
  rc=0; inside "$ROOT" "$WRONG_CPU" "/opt/venv-agent/bin/edge-agent check --no-xnnpack" > "$WORK/out" 2>&1 || rc=$?
  if one_line "$WORK/out" 0 "$rc" "self-test passed: ai_edge_litert"; then
    log "$WRONG_CPU --no-xnnpack: $(cut -c1-200 "$WORK/out")..."
  else
    fail "$WRONG_CPU --no-xnnpack: expected exit 0 and one 'self-test passed' line, got exit $rc:"; cat "$WORK/out" >&2
  fi
fi

# --- 3. a crash is an answer: the host's x86 /proc/cpuinfo crashes ai-edge-litert ----------------
rc=0; HOST_CPUINFO=1 inside "$ROOT" "${CPUS%% *}" "/opt/venv-agent/bin/edge-agent check" > "$WORK/out" 2>&1 || rc=$?
if one_line "$WORK/out" 2 "$rc" "ai_edge_litert with XNNPACK: crashed (SIGSEGV)"; then
  log "x86 cpuinfo: the crash is one line, as it must be: $(cut -c1-200 "$WORK/out")..."
else
  fail "x86 cpuinfo: expected exit 2 and one line naming the crash, got exit $rc:"; cat "$WORK/out" >&2
fi

# --- 4. armhf (32-bit Raspberry Pi OS): refused in one line, before anything is installed -----------
if [ "${ARM64_ARMHF:-1}" = 1 ] && arch-test armhf >/dev/null 2>&1; then
  HF=$(root_for armhf python3)
  enter "$HF"
  for script in "deploy/install.sh --prefix /tmp/ea --config-dir /tmp/ea/etc --no-apt --no-systemd" \
                "deploy/demo.sh"; do
    rc=0; HOST_CPUINFO=1 inside "$HF" cortex-a7 "EDGE_AGENT_NO_APT=1 bash $script 2>&1 >/dev/null" \
      > "$WORK/out" || rc=$?
    if one_line "$WORK/out" 2 "$rc" "error: 32-bit ARM (armhf"; then
      log "armhf ${script%% *}: $(cat "$WORK/out")"
    else
      fail "armhf ${script%% *}: expected exit 2 and one '32-bit ARM' line, got exit $rc:"; cat "$WORK/out" >&2
    fi
  done
elif [ "${ARM64_ARMHF:-1}" = 1 ]; then
  log "armhf: skipped (qemu-arm cannot be registered here)"
fi

log "done in $(( $(date +%s) - started )) s: $([ "$failed" = 0 ] && echo passed || echo FAILED)"
exit "$failed"
