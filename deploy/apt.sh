# Sourced by deploy/demo.sh, install.sh and test.sh: install the apt packages that are missing.
#
#   ensure_apt_packages LOG_FUNCTION PACKAGE...
#
# Checks each package with dpkg first, so a machine that has them all never runs apt (no root
# needed, no network); otherwise one `apt-get update` and one quiet install, with sudo when not
# root. LOG_FUNCTION prints the line saying what is installed (each script logs its own way).
ensure_apt_packages() {
  local log_fn=$1; shift
  local missing=() p sudo=""
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  "$log_fn" "installing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}
