"""scripts/arm64-check.sh (issue 14) without running it: it emulates a Raspberry Pi
and takes many minutes, so CI only checks that it parses, passes shellcheck, and
answers its options; the check itself is run by hand (README, "arm64 and boards").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arm64-check.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_the_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_help_names_the_options_and_the_cache_variable() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for word in ("--cpu", "--fresh", "--qa", "--dry-run", "VOICED_ARM64_CACHE"):
        assert word in result.stdout, word


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--cpu", "cortex-a53"], "--cpu must be cortex-a72 (Pi 4) or cortex-a76 (Pi 5)"),
        (["--cpu"], "--cpu needs a value"),
        (["--frobnicate"], "unknown argument: --frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], says: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert says in result.stderr


def test_dry_run_changes_nothing_and_shows_the_plan_or_what_is_missing(tmp_path: Path) -> None:
    cache = tmp_path / "arm64"
    env = {**os.environ, "VOICED_ARM64_CACHE": str(cache)}
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--cpu", "cortex-a76"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if result.returncode == 0:
        assert "steps: root checkout install wheels prepare verify ask demo tests" in result.stdout
        assert "cpu:   cortex-a76" in result.stdout
        assert f"root:  {cache}/bookworm-arm64 (to be made with debootstrap" in result.stdout
    else:
        assert result.returncode == 1
        assert "FAIL: " in result.stderr
        assert "root" in result.stderr or "apt-get install" in result.stderr
    assert not cache.exists()
