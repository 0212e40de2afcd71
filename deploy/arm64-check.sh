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
#    numbers: `edge-agent check --xnnpack` must refuse it in one line, and `edge-agent check`
#    (TFLite's own kernels, the default) pass;
# 3. the host's x86 /proc/cpuinfo (a bare qemu-user run), on which ai-edge-litert segfaults:
#    `edge-agent check` must say so in one line instead of dying;
# 4. an armhf root: deploy/install.sh and deploy/demo.sh must refuse 32-bit in one line.
# Emulation is for correctness, never for timing (`edge-agent check --bench` on the device).
#
# The roots (arm64 ~330 MB, 6-14 min to build, ~680 MB with the agent's venv inside; armhf
# ~190 MB) are cached in ARM64_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/listening-monitor)
# and rebuilt only when their recipe changes. Needs root, network to Debian's archive
# and PyPI, qemu-user-static + binfmt-support + mmdebstrap + arch-test (installed when
# missing). Where binfmt_misc cannot be mounted (not root, an unprivileged container) it says
# so in ONE line and exits 0; that is its only skip.
#
# Bounded: every step runs under `timeout` (a hung emulated process fails the check with one
# line naming the step), and all of it within ARM64_TIMEOUT seconds (default 3000; measured on
# a shared 2-core VM: 36 min cold under a load of ~12, 7 min with the cached roots; README,
# "Tests"; CI has 90 min for the test environment, the suite and this). A killed
# earlier run leaves nothing that breaks the next: its mounts inside the roots are released
# first, and a half-built root is rebuilt.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/listening-monitor}
CPUS=${ARM64_CPUS:-cortex-a72 cortex-a76}
WRONG_CPU=${ARM64_WRONG_CPU-max}  # empty: skip part 2
PROJ=/opt/listening-monitor       # the checkout's copy inside a root
log() { printf '[arm64] %s\n' "$*" >&2; }
started=$(date +%s)
deadline=$(( started + ${ARM64_TIMEOUT:-3000} ))

RUNNING=""  # the process group of the step under way (timeout makes one), for cleanup
bounded() {  # CAP WHAT COMMAND...: COMMAND under `timeout`, at most CAP s and what is left of
  # the whole check's budget; past it, one line naming WHAT and exit 124. Past it too, every
  # process of the step is killed: the agent ends gracefully on SIGTERM, which would let an
  # emulated one outlive `timeout` (whose own child is gone) and keep a root's mounts busy.
  local cap=$1 what=$2 left rc=0; shift 2
  left=$(( deadline - $(date +%s) ))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -le 0 ]; then
    echo "error: arm64 check: its ${ARM64_TIMEOUT:-3000} s (ARM64_TIMEOUT) ran out before $what" >&2
    return 124
  fi
  timeout --kill-after=20 "$cap" "$@" 0<&0 &  # in the background to learn its group: its pid
  RUNNING=$!
  wait "$RUNNING" || rc=$?
  kill -KILL -- "-$RUNNING" 2>/dev/null || true; RUNNING=""
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "error: arm64 check: $what did not finish in $cap s and was killed (a hang, or a far too slow machine)" >&2
    return 124
  fi
  return "$rc"
}

# --- binfmt: the one reason to skip ------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "arm64 check skipped: not root, so binfmt_misc cannot be mounted for qemu-aarch64"
  exit 0
fi
if ! bounded 600 "apt-get install qemu-user-static binfmt-support mmdebstrap arch-test" \
    bash -c 'source "$1/deploy/apt.sh"; log() { printf "[arm64] %s\n" "$*" >&2; }
             ensure_apt_packages log qemu-user-static binfmt-support mmdebstrap arch-test' _ "$REPO"; then
  echo "error: arm64 check: could not install qemu-user-static binfmt-support mmdebstrap arch-test (above)" >&2
  exit 1
fi
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

release_mounts() {  # DIR: unmount whatever is mounted under DIR (a killed run's /proc, /dev...)
  local m
  # deepest first; /proc/self/mounts escapes a space as \040 (our paths have none)
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
wipe() {  # DIR: remove a root, never crossing into a file system mounted inside it
  release_mounts "$1"
  rm -rf --one-file-system "$1"
}

root_for() {  # ARCH PACKAGES -> prints the root's path; builds it when missing or stale
  local arch=$1 packages=$2 root="$CACHE/$1-bookworm" recipe try rc
  recipe="v1 bookworm $arch apt $packages ${SOURCES[*]}"
  release_mounts "$root"
  if [ "$(cat "$root/.recipe" 2>/dev/null)" = "$recipe" ]; then
    log "reusing the $arch root in $root"
  else
    log "building the $arch Bookworm root in $root (once; a few minutes)"
    mkdir -p "$CACHE"
    for try in 1 2; do  # a second try for a mirror's hiccup, never for a timeout
      wipe "$root.tmp"; rc=0
      bounded 1500 "mmdebstrap $arch" \
        mmdebstrap --quiet --arch="$arch" --variant=apt --include="$packages" bookworm \
        "$root.tmp" "${SOURCES[@]}" >"$CACHE/mmdebstrap-$arch.log" 2>&1 || rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 124 ] && break
    done
    if [ "$rc" != 0 ]; then
      echo "error: arm64 check: mmdebstrap $arch failed (last lines of $CACHE/mmdebstrap-$arch.log):" >&2
      tail -n 5 "$CACHE/mmdebstrap-$arch.log" >&2; exit 1
    fi
    # this machine's extra CA certificates (a proxy's) are trusted inside too (a root without
    # the ca-certificates package, the armhf one, gets the folder made for them)
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      mkdir -p "$root.tmp/usr/local/share/ca-certificates"
      cp /usr/local/share/ca-certificates/*.crt "$root.tmp/usr/local/share/ca-certificates/"
      if [ -x "$root.tmp/usr/sbin/update-ca-certificates" ]; then
        bounded 300 "update-ca-certificates in the $arch root" \
          chroot "$root.tmp" update-ca-certificates >/dev/null 2>&1 || true
      fi
    fi
    echo "$recipe" > "$root.tmp/.recipe"
    wipe "$root"; mv "$root.tmp" "$root"
  fi
  echo "$root"
}

MOUNTS=()
WORK=$(mktemp -d)
cleanup() {
  local i
  if [ -n "$RUNNING" ]; then { kill -KILL -- "-$RUNNING"; wait "$RUNNING"; } 2>/dev/null || true; fi
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # the EXIT trap unmounts on a kill too

enter() {  # ROOT: this checkout copied in, network configuration, /proc /sys /dev mounted
  local root=$1
  release_mounts "$root"
  rm -rf --one-file-system "${root:?}$PROJ"; mkdir -p "$root$PROJ"
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

inside() {  # ROOT CPU CAP COMMAND: COMMAND in the checkout's copy as that CPU, with its
  # cpuinfo, killed after CAP s (HOST_CPUINFO=1: with this machine's x86 /proc/cpuinfo, as a
  # bare qemu-user run shows it)
  local root=$1 cpu=$2 cap=$3 rc=0 what; shift 3
  what=$(printf '%s' "$cpu: $*" | tr -s ' ' | cut -c1-120)
  if [ "${HOST_CPUINFO:-0}" != 1 ]; then
    bounded 120 "$cpu: writing its /proc/cpuinfo" \
      env QEMU_CPU="$cpu" chroot "$root" python3 - "$cpu" < "$REPO/deploy/arm64/cpuinfo.py" \
      > "$root/tmp/cpuinfo-$cpu" || return 1
    mount --bind "$root/tmp/cpuinfo-$cpu" "$root/proc/cpuinfo"
  fi
  bounded "$cap" "$what" \
    chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    QEMU_CPU="$cpu" EDGE_AGENT_VENV=/opt/venv-agent TF_CPP_MIN_LOG_LEVEL=2 \
    bash -c "cd $PROJ && $*" || rc=$?
  if [ "${HOST_CPUINFO:-0}" != 1 ]; then
    umount "$root/proc/cpuinfo" 2>/dev/null || umount -l "$root/proc/cpuinfo"
  fi
  return $rc
}

ROOT=$(root_for arm64 python3,python3-venv,python3-pip,ca-certificates,libportaudio2,libsndfile1,git)
[ "${ARM64_BUILD_ONLY:-0}" = 1 ] && exit 0
enter "$ROOT"
if [ -n "${ARM64_RUN:-}" ]; then  # a developer's command instead of the check, per CPU
  for cpu in $CPUS; do log "$cpu: $ARM64_RUN"; inside "$ROOT" "$cpu" 1800 "$ARM64_RUN"; done
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
  x86=("$REPO/.venv/bin/edge-agent" demo --fast --json)
else
  x86=(bash "$REPO/deploy/demo.sh" --fast --json)
fi
bounded 900 "the x86 demo run (${x86[*]})" "${x86[@]}" > "$WORK/x86.jsonl" \
  || { echo "error: arm64 check: the x86 demo run failed (above), so there is nothing to compare with" >&2
       exit 1; }
log "x86: $(grep -c '"kind":"score"' "$WORK/x86.jsonl") windows scored"

# --- 1. arm64 as a Pi 4 and a Pi 5: deploy/demo.sh, edge-agent check, every window vs x86 --------
runs=()
for cpu in $CPUS; do
  log "$cpu: bash deploy/demo.sh --fast --json, then edge-agent check"
  if inside "$ROOT" "$cpu" 1500 "bash deploy/demo.sh --fast --json > /tmp/demo-$cpu.jsonl \
                            && /opt/venv-agent/bin/edge-agent check"; then
    runs+=("$cpu=$ROOT/tmp/demo-$cpu.jsonl")
  else
    fail "$cpu: deploy/demo.sh or edge-agent check (above)"
  fi
done
if [ ${#runs[@]} -gt 0 ]; then
  bounded 120 "comparing with x86" \
    python3 "$REPO/deploy/arm64/compare.py" "$MANIFEST" "$WORK/x86.jsonl" "${runs[@]}" \
    || fail "a CPU's scores differ from x86 (above)"
fi

# --- 2. a CPU whose XNNPACK kernels compute other numbers: refused in one line ---------------------
# (ai-edge-litert 2.3.0 does; should a later version pass its self-test there, its demo must then
# score as x86 does, which is checked instead)
if [ -n "$WRONG_CPU" ]; then
  rc=0; inside "$ROOT" "$WRONG_CPU" 600 "/opt/venv-agent/bin/edge-agent check --xnnpack" > "$WORK/out" 2>&1 || rc=$?
  if one_line "$WORK/out" 2 "$rc" "self-test failed: ai_edge_litert"; then
    log "$WRONG_CPU: refused, as it must be: $(cut -c1-330 "$WORK/out")..."
  elif one_line "$WORK/out" 0 "$rc" "self-test passed:"; then
    log "$WRONG_CPU: the self-test passes with this runtime; its demo must then score as x86"
    if inside "$ROOT" "$WRONG_CPU" 900 \
         "/opt/venv-agent/bin/edge-agent demo --fast --json --xnnpack > /tmp/demo-$WRONG_CPU.jsonl"; then
      bounded 120 "comparing with x86" python3 "$REPO/deploy/arm64/compare.py" "$MANIFEST" \
        "$WORK/x86.jsonl" "$WRONG_CPU=$ROOT/tmp/demo-$WRONG_CPU.jsonl" \
        || fail "$WRONG_CPU: the self-test passed but the scores differ from x86 (above)"
    else
      fail "$WRONG_CPU: edge-agent demo (above)"
    fi
  else
    fail "$WRONG_CPU: expected one 'self-test failed' line and exit 2 (or a pass), got exit $rc:"; cat "$WORK/out" >&2
  fi
  rc=0; inside "$ROOT" "$WRONG_CPU" 600 "/opt/venv-agent/bin/edge-agent check" > "$WORK/out" 2>&1 || rc=$?
  if one_line "$WORK/out" 0 "$rc" "self-test passed: ai_edge_litert"; then
    log "$WRONG_CPU, TFLite's own kernels (the default): $(cut -c1-200 "$WORK/out")..."
  else
    fail "$WRONG_CPU, TFLite's own kernels (the default): expected exit 0 and one 'self-test passed' line, got exit $rc:"; cat "$WORK/out" >&2
  fi
fi

# --- 3. a crash is an answer: the host's x86 /proc/cpuinfo crashes ai-edge-litert ----------------
# (2.3.0 does; a later version that runs there must pass the self-test instead)
rc=0; HOST_CPUINFO=1 inside "$ROOT" "${CPUS%% *}" 600 "/opt/venv-agent/bin/edge-agent check --xnnpack" > "$WORK/out" 2>&1 || rc=$?
if one_line "$WORK/out" 2 "$rc" "ai_edge_litert with XNNPACK: crashed (SIGSEGV)"; then
  log "x86 cpuinfo: the crash is one line, as it must be: $(cut -c1-200 "$WORK/out")..."
elif one_line "$WORK/out" 0 "$rc" "self-test passed:"; then
  log "x86 cpuinfo: no crash with this runtime, and its self-test passes: $(cut -c1-200 "$WORK/out")..."
else
  fail "x86 cpuinfo: expected exit 2 and one line naming the crash (or a pass), got exit $rc:"; cat "$WORK/out" >&2
fi

# --- 4. armhf (32-bit Raspberry Pi OS): refused in one line, before anything is installed -----------
if [ "${ARM64_ARMHF:-1}" = 1 ] && arch-test armhf >/dev/null 2>&1; then
  if HF=$(root_for armhf python3); then
    enter "$HF"
    for script in "deploy/install.sh --prefix /tmp/ea --config-dir /tmp/ea/etc --no-apt --no-systemd" \
                  "deploy/demo.sh"; do
      rc=0; HOST_CPUINFO=1 inside "$HF" cortex-a7 600 "EDGE_AGENT_NO_APT=1 bash $script 2>&1 >/dev/null" \
        > "$WORK/out" || rc=$?
      if one_line "$WORK/out" 2 "$rc" "error: 32-bit ARM (armhf"; then
        log "armhf ${script%% *}: $(cat "$WORK/out")"
      else
        fail "armhf ${script%% *}: expected exit 2 and one '32-bit ARM' line, got exit $rc:"; cat "$WORK/out" >&2
      fi
    done
  else
    fail "armhf: its root could not be built (above)"
  fi
elif [ "${ARM64_ARMHF:-1}" = 1 ]; then
  log "armhf: skipped (qemu-arm cannot be registered here)"
fi

log "done in $(( $(date +%s) - started )) s: $([ "$failed" = 0 ] && echo passed || echo FAILED)"
exit "$failed"
