"""The service under a real systemd (issue 13): scripts/systemd-check.sh boots a
Debian bookworm container with systemd-nspawn, installs voiced with `voiced
service install` and checks READY, the answers, the hardening, the credentials,
a clean stop, a watchdog restart on a stalled microphone and the state directory.

It runs as root where debootstrap and systemd-nspawn are installed and either the
container root is cached already or ``VOICED_NSPAWN=1`` allows building it
(scripts/test.sh sets it: about a minute of debootstrap once, then about a minute
per run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "systemd-check.sh"
CACHE = Path(os.environ.get("VOICED_NSPAWN_CACHE", "/var/cache/voiced-nspawn"))
CHECK_TIMEOUT_S = 900


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, debootstrap)"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} missing (apt-get install debootstrap systemd-container)"
    built = (CACHE / "bookworm" / ".voiced-root").exists()
    if not built and os.environ.get("VOICED_NSPAWN") != "1":
        return "no cached container root; VOICED_NSPAWN=1 builds one (about a minute)"
    return None


@pytest.mark.models
@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_the_unit_under_a_real_systemd(models_dir: Path) -> None:
    env = {
        **os.environ,
        "VOICED_VENV": sys.prefix,
        "VOICED_TEST_MODELS_DIR": str(models_dir),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run([str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=CHECK_TIMEOUT_S, check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for line in ("active after READY=1", "heard the configured input and answered",
                 "DynamicUser=yes", "ProtectHome=yes", "credential voiced_http_token",
                 "Result=success", "Watchdog timeout", "restarted by the watchdog",
                 "all checks passed"):  # fmt: skip
        assert line in output, line
