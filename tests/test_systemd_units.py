"""The unit files in systemd/: checked by the real `systemd-analyze`, and parsed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from voiced.service.install import rewrite_exec_start, system_paths, unit_source_dir

UNITS = unit_source_dir()
SYSTEM_UNIT = UNITS / "voiced.service"
USER_UNIT = UNITS / "voiced-user.service"
JETSON_DROPIN = UNITS / "voiced-jetson.conf"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> every value assigned (keys may repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def _fake_voiced(tmp_path: Path) -> Path:
    """An existing executable for ExecStart=, so verify checks everything else."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "voiced"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def _verify(unit_file: Path, *, user: bool = False, env: dict[str, str] | None = None) -> str:
    cmd = [_analyze()]
    if user:
        cmd.append("--user")
    cmd += ["verify", "--man=no", str(unit_file)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, output
    return output


def _copy_with_exec(src: Path, dest_dir: Path, exe: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "voiced.service"
    dest.write_text(rewrite_exec_start(src.read_text(), exe))
    return dest


def test_system_unit_verifies_cleanly(tmp_path: Path) -> None:
    unit = _copy_with_exec(SYSTEM_UNIT, tmp_path / "units", _fake_voiced(tmp_path))
    assert _verify(unit) == ""


def test_system_unit_as_shipped_only_lacks_the_executable() -> None:
    tool = _analyze()
    exec_path = parse_unit(SYSTEM_UNIT)["Service"]["ExecStart"][0].split()[0]
    if Path(exec_path).exists():
        pytest.skip(f"{exec_path} exists on this machine")
    proc = subprocess.run(
        [tool, "verify", "--man=no", str(SYSTEM_UNIT)], capture_output=True, text=True, timeout=60
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert lines, "verify was expected to report the missing ExecStart binary"
    assert all(f"Command {exec_path} is not executable" in ln for ln in lines), lines


def test_jetson_dropin_verifies_and_is_read(tmp_path: Path) -> None:
    units = tmp_path / "units"
    unit = _copy_with_exec(SYSTEM_UNIT, units, _fake_voiced(tmp_path))
    dropins = units / "voiced.service.d"
    dropins.mkdir()
    shutil.copy(JETSON_DROPIN, dropins / "jetson.conf")
    assert _verify(unit) == ""
    # Prove the drop-in directory is really parsed: a bad key there is reported.
    (dropins / "zz-bogus.conf").write_text("[Service]\nNoSuchKeyForTest=1\n")
    assert "NoSuchKeyForTest" in _verify(unit)


def test_user_unit_verifies_cleanly(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    unit = _copy_with_exec(USER_UNIT, tmp_path / "units", _fake_voiced(tmp_path))
    assert _verify(unit, user=True, env={"XDG_RUNTIME_DIR": str(runtime)}) == ""


def test_system_unit_settings_and_hardening() -> None:
    unit = parse_unit(SYSTEM_UNIT)
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "TimeoutStartSec": "90",
        "TimeoutStopSec": "10",
        "Restart": "on-failure",
        "RestartSec": "5",
        "DynamicUser": "yes",
        "StateDirectory": "voiced",
        "CacheDirectory": "voiced",
        "ConfigurationDirectory": "voiced",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "DeviceAllow": "char-alsa rw",
        "SupplementaryGroups": "audio",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "@system-service" in service["SystemCallFilter"]
    assert service["ExecStart"] == [
        "/opt/voiced/venv/bin/voiced run --config /etc/voiced/voiced.toml"
    ]
    assert service["ExecReload"] == ["/bin/sh -c 'kill -HUP \"$MAINPID\"'"]
    # Secrets come as credentials from root-only files, never from the config.
    assert service["LoadCredential"] == ["voiced:/etc/voiced/credentials"]
    assert "SetCredential" not in service
    assert unit["Unit"]["StartLimitIntervalSec"] == ["300"]
    assert unit["Unit"]["StartLimitBurst"] == ["5"]
    # These break audio, cffi callbacks or CUDA: they must stay out.
    for key in ("PrivateDevices", "MemoryDenyWriteExecute", "ProcSubset", "PrivateIPC"):
        assert key not in service, key


def test_models_dir_matches_installer() -> None:
    env = parse_unit(SYSTEM_UNIT)["Service"]["Environment"]
    assert "VOICED_MODELS_DIR=%S/voiced/models" in env
    assert system_paths().models_dir == Path("/var/lib/voiced/models")  # %S = /var/lib


def test_user_unit_settings() -> None:
    unit = parse_unit(USER_UNIT)
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["WatchdogSec"] == ["30"]
    assert service["ExecStart"] == [
        "%h/.local/share/voiced/venv/bin/voiced run --config %E/voiced/voiced.toml"
    ], "the config `voiced service install --user` writes ($XDG_CONFIG_HOME or ~/.config)"
    assert service["ExecReload"] == ["/bin/sh -c 'kill -HUP \"$MAINPID\"'"]
    after = " ".join(unit["Unit"]["After"]).split()
    assert {"pipewire.service", "pipewire-pulse.service"} <= set(after)
    assert unit["Install"]["WantedBy"] == ["default.target"]
    assert "loginctl enable-linger" in USER_UNIT.read_text()


def test_jetson_dropin_content() -> None:
    service = parse_unit(JETSON_DROPIN)["Service"]
    assert service["SupplementaryGroups"] == ["video"]
    allowed = [v.split()[0] for v in service["DeviceAllow"]]
    assert "/dev/nvmap" in allowed
    assert any(path.startswith("/dev/nvhost-") for path in allowed)


def test_security_exposure_stays_low() -> None:
    tool = _analyze()
    proc = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(SYSTEM_UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if found is None and "--offline" in proc.stderr:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    assert found is not None, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 2.0, proc.stdout
