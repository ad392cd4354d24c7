"""voiced runs without torch or transformers: none installed, none imported, none tried."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "transformers", "tensorflow")
SUBPROCESS_TIMEOUT_S = 120

# Records every attempt to import a forbidden package (even one caught by a
# `try: import torch / except ImportError`), then imports voiced's heavy modules
# and the engine libraries they load.
PROBE = """
import json, sys
FORBIDDEN = {forbidden!r}
attempts = []

class Probe:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            attempts.append(name)
        return None

sys.meta_path.insert(0, Probe())
{extra}
import voiced.cli.main, voiced.engines.loader, voiced.models.prepare, voiced.models.gguf_convert
import voiced.daemon
import ctranslate2, faster_whisper, gguf, piper, pymicro_wakeword, pyopen_wakeword, tokenizers
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({{"attempts": attempts, "loaded": loaded}}))
"""


def run_probe(extra: str = "") -> dict[str, list[str]]:
    code = PROBE.format(forbidden=FORBIDDEN, extra=extra)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout.splitlines()[-1])
    return report


@pytest.mark.parametrize("package", ["torch", "transformers"])
def test_not_importable(package: str) -> None:
    assert importlib.util.find_spec(package) is None


def test_no_distribution_installed() -> None:
    names = {(dist.metadata["Name"] or "").lower() for dist in importlib.metadata.distributions()}
    assert "voiced" in names, "this is the environment voiced is installed in"
    assert not names & {"torch", "transformers", "tensorflow", "torchaudio"}


def test_pip_list_shows_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {entry["name"].lower() for entry in json.loads(result.stdout)}
    assert "voiced" in names and "ctranslate2" in names
    assert not names & {"torch", "transformers", "tensorflow"}


def test_voiced_never_tries_to_import_torch() -> None:
    report = run_probe()
    assert report == {"attempts": [], "loaded": []}


def test_the_probe_sees_a_guarded_import() -> None:
    """The probe itself works: a `try: import torch` is recorded even though it fails."""
    report = run_probe("try:\n    import torch\nexcept ImportError:\n    pass")
    assert report["attempts"] == ["torch"]


def test_version_command_imports_no_forbidden_module() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "voiced", "--version"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    assert "voiced.cli.main" in imported, "importtime output was parsed"
    assert not [m for m in imported if m.split(".")[0] in FORBIDDEN]
