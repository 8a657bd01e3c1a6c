# Shared by scripts/demo and scripts/test: a private virtualenv with the project
# installed, plus the Debian packages it needs. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install PROGRAM|/FILE PACKAGE...: install the PACKAGEs when that is missing
  case "$1" in
    /*) [ -e "$1" ] && return 0 ;;
    *) command -v "$1" >/dev/null 2>&1 && return 0 ;;
  esac
  echo "installing ${*:2} (Debian packages)..." >&2
  if [ ! -f /tmp/.saml-middleware-apt-updated ]; then
    as_root apt-get update -qq && touch /tmp/.saml-middleware-apt-updated
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
}

# pysaml2 verifies signatures with the xmlsec1 program.
apt_install xmlsec1 xmlsec1

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
install_project() {  # install_project EXTRAS
  local stamp="$VENV/.installed-$1"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$PY" -m pip install -q --disable-pip-version-check -e ".[$1]"
    touch "$stamp"
  fi
}
