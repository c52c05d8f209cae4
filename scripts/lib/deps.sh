# Shared by scripts/install and scripts/test: the Debian packages and the Python environment k3c needs.
# Sourced, not run. Idempotent: a second run installs nothing new.

APT_PACKAGES=(
  python3 python3-venv python3-pip ca-certificates git
  containerd runc containernetworking-plugins iptables iproute2
  buildah skopeo busybox-static gcc libc6-dev
  docker-registry apache2-utils
  docker.io
)

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The registry package starts a system-wide registry on :5000; k3c's tests run their own.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
  # docker.io is a peer the tests compare output with (a private dockerd each); the system's own stays off.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    systemctl disable --now docker docker.socket >/dev/null 2>&1 || true
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
