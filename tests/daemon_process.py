"""A real `voiced run` in its own process, on null audio, logging to a file: for the
tests that talk to a live daemon over HTTP and MQTT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def spawn_daemon(
    config: Path, models_dir: Path, log: Path, *, log_level: str
) -> subprocess.Popen[str]:
    """Start the daemon with ``config`` (no wake word, null input and output)."""
    with log.open("w") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "voiced", "run", "--config", str(config), "--input", "null",
             "--output", "null", "--no-wake", "--models-dir", str(models_dir)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file, text=True,
            env={**os.environ, "VOICED_LOG_LEVEL": log_level},
        )  # fmt: skip
