#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: system packages
# (PortAudio, mosquitto, systemd-analyze, Chromium, debootstrap and systemd-nspawn
# for the real-systemd check, espeak-ng for the wake-word tests' other voices,
# PulseAudio with ALSA's pulse plugin for a sound card whose speaker is wired to
# its microphone (the echo canceller's real path), shellcheck for the scripts),
# venv, voiced with its test extras, then lint (ruff), types (mypy) and pytest
# with the real models.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh" mosquitto systemd chromium openssl \
  debootstrap systemd-container espeak-ng shellcheck pulseaudio pulseaudio-utils \
  libasound2-plugins
# As root, tests/test_systemd_nspawn.py may build its cached bookworm root (about a
# minute of debootstrap, once) and boot it: about a minute per run after that.
if [ "$(id -u)" -eq 0 ]; then
  export VOICED_NSPAWN="${VOICED_NSPAWN:-1}"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${REPO}[test]"
cd "$REPO"
echo ">> ruff"
"$VENV/bin/ruff" check voiced tests
echo ">> mypy"
"$VENV/bin/mypy"
echo ">> pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
