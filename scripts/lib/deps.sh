# Shared by scripts/install and scripts/test: the Debian packages and the Python environment k3c needs.
# Sourced, not run. Idempotent: a second run installs nothing new.

APT_PACKAGES=(
  python3 python3-venv python3-pip ca-certificates git
  containerd runc containernetworking-plugins iptables iproute2
  buildah skopeo busybox-static gcc libc6-dev
)
# Only the tests need these: a registry, htpasswd for its auth, docker 20.10 to compare output with, and
# docker-compose 1.29 (python, docker-py inside) to run a compose project through k3c's Docker API socket.
TEST_APT_PACKAGES=(
  docker-registry apache2-utils
  docker.io docker-compose
)

# install_apt_packages [--test]: k3c's packages (and, with --test, the tests' too).
install_apt_packages() {
  local wanted=("${APT_PACKAGES[@]}") missing=()
  [ "${1:-}" != --test ] || wanted+=("${TEST_APT_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ "${1:-}" = --test ] || return 0
  # The registry package starts a system-wide registry on :5000; k3c's tests run their own.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
  # docker.io is for the tests comparing k3c's output with docker 20.10's: they start a private dockerd
  # (bench/peers.py); the package's system-wide one would add its own bridge and iptables rules.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    systemctl disable --now docker.socket docker >/dev/null 2>&1 || true
  fi
}

pick_python() {
  for py in python3.13 python3.12 python3.11 python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  echo "k3c needs Python 3.11 or newer" >&2
  return 1
}

# make_venv DIR PIP_ARGS... : create DIR as a venv (if needed) and pip install into it.
make_venv() {
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    "$(pick_python)" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
