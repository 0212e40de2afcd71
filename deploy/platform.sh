# Sourced by deploy/demo.sh and deploy/install.sh: what this machine must be to run the agent.
#
#   require_64bit PYTHON    # exit status 1 and ONE line on a 32-bit system
#
# Why: the agent needs a TFLite runtime, and neither ai-edge-litert nor tflite-runtime has a
# wheel for 32-bit ARM with the Python of Raspberry Pi OS Bookworm (3.11: tflite-runtime's
# last armv7l wheels are for Python 3.9), so a 32-bit install would end, a minute later, in
# "no TFLite runtime". The test is Python's own pointer size, not `uname -m`: a Pi 4 running
# Raspberry Pi OS 32-bit has a 64-bit kernel (uname says aarch64) under a 32-bit userland.
require_64bit() {
  local python=$1 bits arch
  bits=$("$python" -c 'import struct; print(struct.calcsize("P") * 8)' 2>/dev/null || echo "?")
  [ "$bits" != 32 ] && return 0
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case "$arch" in
    armhf|armel|arm*)
      echo "error: 32-bit ARM ($arch, e.g. Raspberry Pi OS 32-bit) is not supported: no TFLite runtime has wheels for it with $("$python" --version 2>&1); install the 64-bit Raspberry Pi OS (Bookworm, arm64) and run this again" >&2 ;;
    *)
      echo "error: 32-bit systems ($arch) are not supported: no TFLite runtime has wheels for them; use a 64-bit OS (arm64 or x86-64)" >&2 ;;
  esac
  return 1
}
