#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: system packages, a venv,
# and the project installed into it. Safe to run again: it skips what is done.
# Usage: source scripts/bootstrap.sh [extra apt packages...]; then use "$VENV".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICED_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
for pkg in libportaudio2 python3-venv "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# A python3 from elsewhere (pyenv, deadsnakes) brings its own venv module.
if "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt=("${need_apt[@]/python3-venv}")
fi
mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | grep -v '^$' || true)
if ((${#need_apt[@]})); then
  echo ">> installing system packages: ${need_apt[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "run as root or install: ${need_apt[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "voiced needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo ">> installing voiced into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
