"""`voiced doctor`: the real checks on this machine, and each failure with its fix."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voiced.cli import service_cmd
from voiced.models.tiers import resolve_slm_model, this_machine, tier_for
from voiced.service import doctor
from voiced.service.doctor import Finding, exit_code, format_findings, run_checks
from voiced.settings import MqttSettings, Settings

REPO = Path(__file__).resolve().parent.parent
CLI_TIMEOUT_S = 120


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def test_the_real_checks_pass_on_this_machine(models_dir: Path) -> None:
    findings = run_checks(Settings(), models_dir)
    print(format_findings(findings))
    found = by_name(findings)
    models = [f for f in findings if f.name.startswith("model ")]
    assert {f.name for f in models} == {
        "model whisper-tiny.en", "model piper-en_US-joe-medium",
        f"model {resolve_slm_model('auto')}", "model micro-wakeword",
    }  # fmt: skip
    assert all(f.status == "ok" for f in models), models
    assert found["language model"].status == "ok"
    assert f"the {tier_for(this_machine()).name} tier" in found["language model"].detail
    for name in ("config", "python", "cpu", "disk", "profile", "mqtt"):
        assert found[name].status == "ok", found[name]
    assert "not configured" in found["mqtt"].detail
    for name in ("memory", "torch", "sound system"):
        assert found[name].status in ("ok", "warn"), found[name]
    assert "core(s)" in found["cpu"].detail
    assert any(f.name.startswith("audio") for f in findings)
    assert all(f.status != "fail" for f in findings)
    assert exit_code(findings) == 0


def test_a_missing_models_dir_fails_with_the_prepare_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-models"
    findings = run_checks(Settings(), missing)
    (models,) = [f for f in findings if f.name == "models"]
    assert models.status == "fail" and str(missing) in models.detail
    assert models.fix == f"voiced models prepare --models-dir {missing}"
    assert exit_code(findings) == 1
    assert f"fix: voiced models prepare --models-dir {missing}" in format_findings(findings)


def test_a_corrupted_or_unprepared_model_fails_with_the_fix(
    models_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir / "micro-wakeword", copy / "micro-wakeword")
    victim = next(p for p in sorted((copy / "micro-wakeword").iterdir()) if p.suffix == ".json")
    victim.write_bytes(victim.read_bytes()[:-1] + b" ")
    found = by_name(doctor.check_models(Settings(), copy))
    wake = found["model micro-wakeword"]
    assert wake.status == "fail" and "sha256 mismatch" in wake.detail and str(victim) in wake.detail
    assert wake.fix == f"voiced models prepare micro-wakeword --force --models-dir {copy}"
    asr = found["model whisper-tiny.en"]
    assert asr.status == "fail" and "not prepared" in asr.detail


def test_configured_models_are_the_ones_checked(models_dir: Path, tmp_path: Path) -> None:
    text = "[slm]\nenabled = false\n[asr]\nmodel = 'whisper-huge'\n"
    config = tmp_path / "voiced.toml"
    config.write_text(text)
    names = {f.name: f for f in run_checks(None, models_dir, config_path=config)}
    assert "model smollm2-135m-instruct" not in names
    assert names["model whisper-huge"].status == "fail"
    assert "unknown model" in names["model whisper-huge"].detail


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("[asr]\nbeam_sise = 2\n", ["unknown key `asr.beam_sise`", "line 2"]),
        (
            "[listen]\n\nsilence_end_ms = 'long'\n",
            ["`listen.silence_end_ms` must be int", "line 3"],
        ),
        ("[asr\n", ["not valid TOML"]),
    ],
    ids=["bad-key", "wrong-type", "not-toml"],
)
def test_a_bad_config_fails_naming_the_key(
    text: str, wanted: list[str], models_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text(text)
    findings = run_checks(None, models_dir, config_path=config)
    found = by_name(findings)["config"]
    assert found.status == "fail" and found.fix
    for part in wanted:
        assert part in found.detail
    assert exit_code(findings) == 1


def test_a_missing_config_file_fails(tmp_path: Path) -> None:
    finding, settings = doctor.check_config_file(tmp_path / "absent.toml")
    assert finding.status == "fail" and "does not exist" in finding.detail and settings is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_broker_is_reported_with_a_fix() -> None:
    port = _free_port()  # closed again: nothing listens there
    settings = Settings(mqtt=MqttSettings(host="127.0.0.1", port=port))
    finding = doctor.check_mqtt(settings)
    assert finding.status in ("warn", "fail")
    assert f"127.0.0.1:{port}" in finding.detail and "unreachable" in finding.detail
    assert finding.fix and "mqtt.host" in finding.fix and str(port) in finding.fix


def test_a_listening_broker_is_ok() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        settings = Settings(mqtt=MqttSettings(host="127.0.0.1", port=port))
        assert doctor.check_mqtt(settings).status == "ok"


def test_exit_code_and_format() -> None:
    ok = Finding("a", "ok", "fine", "unused fix")
    warn = Finding("b", "warn", "slow", "do this")
    fail = Finding("c", "fail", "broken", "do that")
    assert exit_code([]) == 0
    assert exit_code([ok, warn]) == 0
    assert exit_code([ok, warn, fail]) == 1
    text = format_findings([ok, warn, fail])
    assert text.splitlines() == [
        "[ ok ] a: fine", "[warn] b: slow", "       fix: do this",
        "[fail] c: broken", "       fix: do that", "1 ok, 1 warning(s), 1 failure(s)",
    ]  # fmt: skip


def test_a_crashing_probe_becomes_a_warning(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    def boom() -> Finding:
        raise RuntimeError("probe broke")

    monkeypatch.setattr(doctor, "check_torch", boom)
    found = by_name(run_checks(Settings(), models_dir))
    assert found["torch"].status == "warn" and "probe broke" in found["torch"].detail
    assert found["python"].status == "ok", "the other checks still ran"


def test_python_version() -> None:
    assert doctor.check_python((3, 11)).status == "ok"
    old = doctor.check_python((3, 10))
    assert old.status == "fail" and "3.11" in old.detail and old.fix


ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd0b\n"
OLD_X86 = "processor\t: 0\nflags\t\t: fpu vme sse sse2\n"


def test_cpu_features_and_cores() -> None:
    arm = doctor.check_cpu(ARM_CPUINFO, cores=4)
    assert arm.status == "ok" and "asimd" in arm.detail and "4 core(s)" in arm.detail
    slow = doctor.check_cpu(OLD_X86, cores=4)
    assert slow.status == "warn" and "none found" in slow.detail and slow.fix
    single = doctor.check_cpu("flags : avx2\n", cores=1)
    assert single.status == "warn" and "1 core(s)" in single.detail


def test_memory_thresholds() -> None:
    low = doctor.check_memory("MemTotal: 2000000 kB\nMemAvailable: 500000 kB\n")
    assert low.status == "warn" and "0.5 GiB available" in low.detail and low.fix
    assert doctor.check_memory("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n").status == "ok"
    assert doctor.check_memory("").status == "warn"


def test_sound_system_situation(tmp_path: Path) -> None:
    snd, proc = tmp_path / "snd", tmp_path / "proc"
    assert doctor.check_sound_system(snd, proc, runtime_dir="").status == "warn"
    snd.mkdir()
    for node in ("pcmC0D0c", "pcmC0D0p", "controlC0"):
        (snd / node).touch()
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "comm").write_text("pipewire\n")
    (proc / "self").mkdir()
    server = doctor.check_sound_system(snd, proc, runtime_dir="")
    assert server.status == "warn" and "pipewire" in server.detail and "1 capture" in server.detail
    assert server.fix and "--user" in server.fix
    user = doctor.check_sound_system(snd, proc, runtime_dir=f"/run/user/{os.getuid()}")
    assert user.status == "ok" and "user unit" in user.detail
    (proc / "4242" / "comm").write_text("bash\n")
    alsa = doctor.check_sound_system(snd, proc, runtime_dir="")
    assert alsa.status == "ok" and "raw ALSA" in alsa.detail


# -- the commands, in process (service_cmd registered on its own parser) ----------


def run_in_process(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="voiced")
    service_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_doctor_command_in_process(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_in_process("doctor", "--models-dir", str(models_dir)) == 0
    out = capsys.readouterr().out
    assert "[ ok ] model whisper-tiny.en" in out and "failure(s)" in out


def test_doctor_command_reports_a_bad_config(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[wake]\nrefractory = 3\n")
    assert run_in_process("doctor", "--config", str(config), "--models-dir", str(models_dir)) == 1
    out = capsys.readouterr().out
    assert "[fail] config:" in out and "wake.refractory" in out and "line 2" in out


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[asr]\nbeam_size = 2\n")
    bad.write_text("[asr]\nbeam_size = 'two'\n")
    assert run_in_process("config", "check", str(good)) == 0
    assert capsys.readouterr().out.strip() == "ok"
    assert run_in_process("config", "check", str(bad)) == 2
    err = capsys.readouterr().err
    assert "asr.beam_size" in err and "line 2" in err and "error[config]" in err


def test_service_install_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    assert run_in_process("service", "install", "--user", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "voiced.service" in out
    assert not (tmp_path / ".config" / "systemd").exists(), "a dry run writes nothing"


# -- through `python -m voiced` (needs service_cmd wired into voiced/cli/main.py) --


def voiced(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiced", *args], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, **(env or {})}, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def test_cli_doctor(models_dir: Path) -> None:
    result = voiced("doctor", "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[ ok ] model {resolve_slm_model('auto')}" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_doctor_fails_without_models(tmp_path: Path) -> None:
    result = voiced("doctor", "--models-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert f"fix: voiced models prepare --models-dir {tmp_path / 'nothing'}" in result.stdout


def test_cli_config_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("models_dir = 3\n")
    result = voiced("config", "check", str(bad))
    assert result.returncode == 2
    assert "models_dir" in result.stderr and "line 1" in result.stderr
    assert "Traceback" not in result.stderr
