"""The installer's plan. Nothing is installed on this machine: only plans are
inspected, and only file-writing steps are applied, into tmp_path."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from voiced.errors import UsageError
from voiced.service import install as inst
from voiced.service.install import (
    PrintHint,
    RunCommand,
    WriteFile,
    apply,
    check_service_can_run,
    format_plan,
    plan_install,
    rewrite_exec_start,
    system_paths,
    unit_source_dir,
    user_paths,
)


@pytest.fixture
def venv_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "voiced"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return bin_dir


def _writes(steps: list[inst.InstallStep]) -> dict[Path, WriteFile]:
    return {s.action.path: s.action for s in steps if isinstance(s.action, WriteFile)}


def _commands(steps: list[inst.InstallStep]) -> list[tuple[str, ...]]:
    return [s.action.argv for s in steps if isinstance(s.action, RunCommand)]


def test_unit_source_dir_has_the_files() -> None:
    for name in ("voiced.service", "voiced-user.service", "voiced-jetson.conf",
                 "voiced.example.toml"):  # fmt: skip
        assert (unit_source_dir() / name).is_file(), name


def test_system_plan(venv_bin: Path) -> None:
    steps = plan_install(False, venv_bin)
    exe = venv_bin / "voiced"
    writes = _writes(steps)
    unit = writes[Path("/etc/systemd/system/voiced.service")]
    source = (unit_source_dir() / "voiced.service").read_text()
    assert f"ExecStart={exe} run --config /etc/voiced/voiced.toml\n" in unit.content
    assert unit.content == source.replace("/opt/voiced/venv/bin/voiced", str(exe))
    config = writes[Path("/etc/voiced/voiced.toml")]
    assert not config.overwrite
    assert config.content == (unit_source_dir() / "voiced.example.toml").read_text()
    assert _commands(steps) == [
        (str(exe), "models", "prepare", "--config", "/etc/voiced/voiced.toml",
         "--models-dir", "/var/lib/voiced/models"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "voiced.service"),
    ]
    assert not any(isinstance(s.action, PrintHint) for s in steps)
    plan = format_plan(steps)
    assert plan.startswith("1. write /etc/systemd/system/voiced.service")
    assert "unless it exists" in plan


def test_jetson_dropin_only_in_system_mode(venv_bin: Path, tmp_path: Path) -> None:
    dropin = Path("/etc/systemd/system/voiced.service.d/jetson.conf")
    assert dropin in _writes(plan_install(False, venv_bin, jetson=True))
    assert dropin not in _writes(plan_install(False, venv_bin))
    user = plan_install(True, venv_bin, paths=user_paths(tmp_path, {}), jetson=True)
    assert not any(p.name == "jetson.conf" for p in _writes(user))


def test_user_plan(venv_bin: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    steps = plan_install(True, venv_bin, paths=user_paths(home, {}))
    exe = venv_bin / "voiced"
    writes = _writes(steps)
    unit = writes[home / ".config/systemd/user/voiced.service"]
    assert f"ExecStart={exe} run --config %E/voiced/voiced.toml\n" in unit.content
    assert "Environment=VOICED_MODELS_DIR=%h/.local/share/voiced/models" in unit.content
    assert not writes[home / ".config/voiced/voiced.toml"].overwrite
    models = str(home / ".local/share/voiced/models")
    assert _commands(steps) == [
        (str(exe), "models", "prepare", "--config", str(home / ".config/voiced/voiced.toml"),
         "--models-dir", models),
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "--now", "voiced.service"),
    ]
    hints = [s.action for s in steps if isinstance(s.action, PrintHint)]
    assert len(hints) == 1 and "loginctl enable-linger" in hints[0].text


def test_user_paths_honour_xdg_config_home(tmp_path: Path) -> None:
    paths = user_paths(tmp_path / "home", {"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert paths.unit_dir == tmp_path / "cfg/systemd/user"
    assert paths.config_file == tmp_path / "cfg/voiced/voiced.toml"


def test_plan_without_models_or_enable(venv_bin: Path) -> None:
    steps = plan_install(False, venv_bin, prepare_models=False, enable=False)
    assert _commands(steps) == [("systemctl", "daemon-reload")]


def test_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        plan_install(False, tmp_path)


def test_rewrite_exec_start() -> None:
    text = "[Service]\nExecStart=/old/voiced run --x\nExecStartPre=/bin/true\n"
    assert rewrite_exec_start(text, Path("/new/bin/voiced")) == (
        "[Service]\nExecStart=/new/bin/voiced run --x\nExecStartPre=/bin/true\n"
    )
    assert rewrite_exec_start("ExecStart=/a", Path("/b/50%/voiced")) == (
        "ExecStart=/b/50%%/voiced\n"
    )
    with pytest.raises(UsageError):
        rewrite_exec_start(text, Path("/my venv/bin/voiced"))
    with pytest.raises(UsageError):
        rewrite_exec_start(text, Path("venv/bin/voiced"))


def test_apply_file_steps_into_a_temporary_root(venv_bin: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = system_paths(root)
    config = root / "etc/voiced/voiced.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# mine\n")
    steps = plan_install(False, venv_bin, paths=paths, jetson=True)
    file_steps = [s for s in steps if isinstance(s.action, WriteFile)]
    echoed: list[str] = []
    apply(file_steps, echo=echoed.append)
    assert len(echoed) == len(file_steps) == 3
    unit = root / "etc/systemd/system/voiced.service"
    assert f"ExecStart={venv_bin / 'voiced'} run" in unit.read_text()
    assert unit.stat().st_mode & 0o777 == 0o644
    assert (root / "etc/systemd/system/voiced.service.d/jetson.conf").is_file()
    assert config.read_text() == "# mine\n"  # an existing configuration is kept
    assert not list(unit.parent.glob(".*tmp*"))


def test_install_dry_run_prints_and_does_nothing(venv_bin: Path) -> None:
    lines: list[str] = []
    steps = inst.install(False, venv_bin, dry_run=True, profile="jetson-orin-nano",
                         echo=lines.append)  # fmt: skip
    assert lines[0].startswith("dry run; would:\n1. write /etc/systemd/system/voiced.service")
    assert "jetson.conf" in lines[0] and "/etc/voiced/credentials" in lines[0]
    assert "systemctl enable --now voiced.service" in lines[0]
    assert len(steps) == 7
    # The venv is under /tmp here, which PrivateTmp=yes hides from the unit.
    assert len(lines) == 2 and "would refuse" in lines[1] and "PrivateTmp=yes" in lines[1]


def test_a_venv_the_hardened_unit_cannot_see_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's set-up put the venv in the clone under /home (or a pyenv Python
    under /root): with ProtectHome=yes and DynamicUser=yes it failed with 203/EXEC."""
    for hidden in ("/home/pi/voiced/.venv/bin/voiced", "/root/voiced/.venv/bin/voiced",
                   "/tmp/venv/bin/voiced"):  # fmt: skip
        with pytest.raises(UsageError) as info:
            check_service_can_run(Path(hidden))
        assert "/opt/voiced/venv" in (info.value.fix or "")
    # pytest's tmp_path is 0700; the service user must be able to search every folder.
    base = Path(tempfile.mkdtemp(prefix="voiced-install-"))
    try:
        base.chmod(0o755)
        for folder in ("venv/bin", "pyenv"):
            (base / folder).mkdir(parents=True, mode=0o755)
        exe, python = base / "venv/bin/voiced", base / "pyenv/python3"
        python.write_text("")
        exe.write_text(f"#!{python}\n")
        for file in (exe, python):
            file.chmod(0o755)
        monkeypatch.setattr(inst, "HIDDEN_FROM_SERVICE", ())
        check_service_can_run(exe)  # reachable and readable: fine
        hidden = ((base / "pyenv", "ProtectHome=yes"),)
        monkeypatch.setattr(inst, "HIDDEN_FROM_SERVICE", hidden)
        with pytest.raises(UsageError, match="ProtectHome"):
            check_service_can_run(exe)  # the venv's own Python is hidden
        monkeypatch.setattr(inst, "HIDDEN_FROM_SERVICE", ())
        python.parent.chmod(0o700)
        with pytest.raises(UsageError, match="DynamicUser"):
            check_service_can_run(exe)
    finally:
        shutil.rmtree(base)


def test_system_install_makes_a_root_only_credentials_directory(
    venv_bin: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    steps = plan_install(False, venv_bin, paths=system_paths(root), prepare_models=False,
                         enable=False)  # fmt: skip
    apply([s for s in steps if not isinstance(s.action, RunCommand)])
    credentials = root / "etc/voiced/credentials"
    assert credentials.is_dir() and credentials.stat().st_mode & 0o777 == 0o700
    assert (root / "etc/voiced/voiced.toml").stat().st_mode & 0o777 == 0o644
    assert "password =" not in (root / "etc/voiced/voiced.toml").read_text()


def test_main_dry_run(venv_bin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dry-run", "--user", "--profile", "rpi4", "--venv-bin", str(venv_bin)]
    assert inst.main(argv) == 0
    out = capsys.readouterr().out
    assert "systemctl --user enable --now voiced.service" in out
    assert "loginctl enable-linger" in out


def test_main_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inst.main(["--dry-run", "--profile", "rpi4", "--venv-bin", str(tmp_path)]) == 2
    assert "error[usage]" in capsys.readouterr().err
