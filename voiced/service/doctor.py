"""`voiced doctor`: what on this machine would stop voiced from running, and the fix.

Each check returns a :class:`Finding`: ``ok``, ``warn`` (runs, but something is
off or slow) or ``fail`` (something blocks running). A check that crashes is
itself reported as a ``warn`` naming the exception, so one broken probe never
hides the others. Nothing here needs root or a network beyond the configured
MQTT broker.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from voiced.errors import VoicedError
from voiced.settings import Settings, load_settings

__all__ = ["Finding", "Status", "exit_code", "format_findings", "run_checks"]

Status = Literal["ok", "warn", "fail"]
GIB = 1 << 30
MIN_AVAILABLE_BYTES = GIB
MIN_FREE_DISK_BYTES = GIB
MQTT_TIMEOUT_S = 2.0
SOUND_SERVERS = ("pipewire", "pulseaudio")
_NO_SOUND_FIX = (
    "sudo apt-get install libportaudio2 alsa-utils; check the card with `arecord -l` / "
    "`aplay -l`; without one, run with --input FILE.wav --output null"
)


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def _ok(name: str, detail: str) -> Finding:
    return Finding(name, "ok", detail)


def _warn(name: str, detail: str, fix: str | None = None) -> Finding:
    return Finding(name, "warn", detail, fix)


def _fail(name: str, detail: str, fix: str | None = None) -> Finding:
    return Finding(name, "fail", detail, fix)


def run_checks(
    settings: Settings | None, models_dir: Path, *, config_path: Path | None = None
) -> list[Finding]:
    """Every check, in the order a user fixes things: config, Python, machine, models, audio.

    With ``config_path`` the file is checked (a bad key or type is a ``fail``
    naming the key and line). The settings checked are ``settings`` (``voiced
    doctor`` passes the daemon's own: the config over the hardware profile), else
    the file's, else the defaults.
    """
    findings: list[Finding] = []
    config_finding, loaded = check_config_file(config_path)
    findings.append(config_finding)
    if config_path is not None and loaded is not None:
        findings.append(check_secrets(config_path, loaded))
    settings = settings or loaded or Settings()
    checks: list[tuple[str, Callable[[], Iterable[Finding]]]] = [
        ("python", lambda: [check_python()]),
        ("cpu", lambda: [check_cpu()]),
        ("memory", lambda: [check_memory()]),
        ("disk", lambda: [check_disk(models_dir)]),
        ("models", lambda: check_models(settings, models_dir)),
        ("profile", lambda: [check_profile(settings)]),
        ("torch", lambda: [check_torch()]),
        ("sound system", lambda: [check_sound_system()]),
        ("audio devices", lambda: check_audio_devices(settings)),
        ("echo cancel", lambda: [check_echo_cancel(settings)]),
        ("mqtt", lambda: [check_mqtt(settings)]),
    ]
    for name, check in checks:
        try:
            findings.extend(check())
        except Exception as err:  # a broken probe must not hide the other findings
            findings.append(_warn(name, f"the check itself failed: {err!r}"))
    return findings


def format_findings(findings: Iterable[Finding]) -> str:
    """One line per finding, its fix indented below, and a summary line."""
    lines: list[str] = []
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for finding in findings:
        counts[finding.status] += 1
        lines.append(f"[{finding.status:^4}] {finding.name}: {finding.detail}")
        if finding.fix and finding.status != "ok":
            lines.append(f"       fix: {finding.fix}")
    lines.append(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    return "\n".join(lines)


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any finding is a ``fail`` (something blocks running), else 0."""
    return 1 if any(f.status == "fail" for f in findings) else 0


# -- configuration and Python -------------------------------------------------


def check_config_file(path: Path | None) -> tuple[Finding, Settings | None]:
    """The config file loads (a bad key or type names the key and line) and, when the
    config checker is installed, its intents, hooks and HTTP bind are valid too."""
    if path is None:
        return _ok("config", "no config file given; using the defaults"), None
    fix = f"edit {path} (systemd/voiced.example.toml shows every key)"
    try:
        settings = load_settings(path)
    except VoicedError as err:
        return _fail("config", err.message, err.fix or fix), None
    problems = _config_checker()(path)
    if problems:
        first_lines = (p.splitlines()[0].removeprefix("error[config]: ") for p in problems)
        return _fail("config", "; ".join(first_lines), fix), None
    return _ok("config", f"{path} is valid"), settings


def check_secrets(path: Path, settings: Settings) -> Finding:
    """No secret in a config that other users can read (the system service's must
    stay world-readable): tokens and passwords belong in root-only files."""
    pairs = (("http.token", settings.http.token), ("mqtt.password", settings.mqtt.password))
    inline = [key for key, value in pairs if value]
    try:
        readable = bool(path.stat().st_mode & 0o004)
    except OSError:
        readable = False
    if inline and readable:
        return _warn(
            "secrets", f"{' and '.join(inline)} sit in {path}, which every user can read",
            "move each into a root-only file: sudo install -m 600 /dev/stdin "
            "/etc/voiced/credentials/http_token (or mqtt_password), and delete the key; the "
            "system unit loads that directory as systemd credentials",
        )  # fmt: skip
    return _ok("secrets", "none in the config" if not inline else f"{path} is not world-readable")


def _config_checker() -> Callable[[Path], list[str]]:
    """voiced.control.config_check.check_config when it is there, else no extra checks."""
    try:
        module = importlib.import_module("voiced.control.config_check")
    except ImportError:
        return lambda _: []
    checker: Callable[[Path], list[str]] = module.check_config
    return checker


def check_python(version: tuple[int, int] | None = None) -> Finding:
    major, minor = version or sys.version_info[:2]
    text = f"Python {major}.{minor} ({sys.executable})"
    if (major, minor) >= (3, 11):
        return _ok("python", text)
    return _fail("python", f"{text}; voiced needs 3.11+", "create the venv with python3.11+")


# -- the machine ----------------------------------------------------------------


def check_cpu(cpuinfo: str | None = None, cores: int | None = None) -> Finding:
    """SIMD and core count, with what they mean for speed."""
    text = _read_text(Path("/proc/cpuinfo")) if cpuinfo is None else cpuinfo
    cores = cores or _usable_cores()
    words = {
        w
        for line in text.splitlines()
        if line.lower().startswith(("flags", "features"))
        for w in line.split(":", 1)[-1].split()
    }
    simd = [name for name in ("avx512f", "avx2", "neon", "asimd") if name in words]
    detail = f"{cores} core(s), SIMD: {', '.join(simd) or 'none found'}"
    if not simd:
        return _warn(
            "cpu",
            detail + "; CTranslate2 and onnxruntime fall back to "
            "scalar kernels, expect replies several times slower",
            "use the smallest models (the defaults) and keep the SLM off (slm.enabled = false)",
        )
    if cores < 2:
        return _warn(
            "cpu",
            detail + "; one core runs ASR, TTS and the SLM in turn, expect slow replies",
            "give voiced at least 2 cores",
        )
    speed = "keep up with speech" if cores >= 4 else "work; replies wait for a free core"
    return _ok("cpu", f"{detail}: the default (tiny) models {speed}")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_memory(meminfo: str | None = None) -> Finding:
    text = _read_text(Path("/proc/meminfo")) if meminfo is None else meminfo
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * 1024  # /proc/meminfo counts kB
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if total is None or available is None:
        return _warn("memory", "cannot read /proc/meminfo")
    detail = f"{available / GIB:.1f} GiB available of {total / GIB:.1f} GiB"
    if available < MIN_AVAILABLE_BYTES:
        return _warn(
            "memory",
            detail + "; voiced takes about 0.9 GiB (0.65 GiB with the SLM off)",
            "stop other services, add swap (zram), or set slm.enabled = false",
        )
    return _ok("memory", detail)


def check_disk(models_dir: Path) -> Finding:
    probe = models_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{free / GIB:.1f} GiB free for {models_dir}"
    if free < MIN_FREE_DISK_BYTES:
        return _warn(
            "disk",
            detail + "; preparing models needs about 1 GiB",
            f"free space on the filesystem of {probe}, or use --models-dir",
        )
    return _ok("disk", detail)


def check_torch() -> Finding:
    if importlib.util.find_spec("torch") is None:
        return _ok("torch", "not installed (voiced does not need it)")
    detail = "installed here; voiced never imports it, and it costs GiBs of disk"
    return _warn("torch", detail, "pip uninstall torch")


def check_profile(settings: Settings) -> Finding:
    from voiced.service.profiles import FALLBACK_PROFILE, detect_profile, load_profile

    if settings.profile:
        profile = load_profile(settings.profile)
        return _ok("profile", f"{profile.name} (configured): {profile.description}")
    detected = detect_profile()
    if detected is None:
        return _ok("profile", f"no board detected; {FALLBACK_PROFILE} suits a PC or server")
    return _ok("profile", f"{detected} (detected)")


# -- models ---------------------------------------------------------------------


def check_slm_tier(settings: Settings) -> Finding:
    """Which language-model tier fits this machine, and which one the settings use."""
    from voiced.models.tiers import TIERS, resolve_slm_model, this_machine, tier_for

    machine = this_machine()
    fits = tier_for(machine)
    detail = (
        f"{machine.memory_bytes / GIB:.1f} GiB, {machine.cores} cores: the {fits.name} tier "
        f"({fits.model}) fits"
    )
    if settings.slm.path:
        return _ok("language model", f"{detail}; the config uses its own model {settings.slm.path}")
    try:
        chosen = resolve_slm_model(settings.slm.model)
    except VoicedError as err:
        return _fail("language model", err.message, err.fix)
    tier = next((t for t in TIERS if t.model == chosen), None)
    if tier is not None and TIERS.index(tier) < TIERS.index(fits):
        return _warn(
            "language model",
            f"{detail}, but slm.model picks the {tier.name} tier ({chosen}), which needs "
            f"{tier.min_memory_bytes / GIB:.1f} GiB and {tier.min_cores} cores",
            'set slm.model = "auto" to let voiced choose, or expect slow replies',
        )
    return _ok("language model", f"{detail}; using {chosen}")


def check_models(settings: Settings, models_dir: Path) -> list[Finding]:
    """Every model the settings need, re-hashed against its stamp."""
    from voiced.engines.wake_names import BUILTIN, manifest_models
    from voiced.models.manifest import load_manifest
    from voiced.models.store import check_model
    from voiced.models.tiers import resolve_slm_model

    prepare = f"voiced models prepare --models-dir {models_dir}"
    if not models_dir.is_dir():
        return [_fail("models", f"models directory {models_dir} does not exist", prepare)]
    manifest = load_manifest()
    wanted: list[tuple[str, str | None]] = [
        (settings.asr.model, settings.asr.path),
        (settings.tts.voice, settings.tts.path),
    ]
    if settings.slm.enabled:
        wanted.append((resolve_slm_model(settings.slm.model, manifest=manifest), settings.slm.path))
    engine, wake_model = settings.wake.engine, settings.wake.model
    if wake_model in BUILTIN.get(engine, ()):
        wanted.extend((name, None) for name in manifest_models(engine))
    else:  # a model file of the user's own
        wanted.append((Path(wake_model).name, wake_model))
    findings: list[Finding] = [check_slm_tier(settings)] if settings.slm.enabled else []
    for name, own_path in wanted:
        if own_path is not None:
            findings.append(_own_model(name, Path(own_path).expanduser()))
            continue
        try:
            spec = manifest.get(name)
        except VoicedError as err:
            findings.append(_fail(f"model {name}", err.message, err.fix))
            continue
        check = check_model(models_dir, spec, full=True)
        status: Status = "ok" if check.ok else "fail"
        fix = f"voiced models prepare {name} --force --models-dir {models_dir}"
        findings.append(Finding(f"model {name}", status, check.detail, None if check.ok else fix))
    return findings


def _own_model(name: str, path: Path) -> Finding:
    if path.exists():
        return _ok(f"model {path.name}", f"your own file {path} (not verified)")
    return _fail(
        f"model {name}",
        f"{path} does not exist",
        "fix the path in the config or remove the key to use the default",
    )


# -- audio ----------------------------------------------------------------------


def check_sound_system(
    dev_snd: Path = Path("/dev/snd"),
    proc: Path = Path("/proc"),
    runtime_dir: str | None = None,
) -> Finding:
    """ALSA device nodes, a user sound server, and the runtime dir a user unit needs."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") if runtime_dir is None else runtime_dir
    servers = sorted(_running_for_user(proc, SOUND_SERVERS))
    nodes = sorted(p.name for p in dev_snd.glob("pcmC*")) if dev_snd.is_dir() else []
    captures = sum(name.endswith("c") for name in nodes)
    parts = [
        f"/dev/snd: {len(nodes)} PCM node(s), {captures} capture"
        if dev_snd.is_dir()
        else "/dev/snd absent",
        f"sound server: {', '.join(servers) or 'none for this user'}",
        f"XDG_RUNTIME_DIR={runtime or '(unset)'}",
    ]
    detail = "; ".join(parts)
    if not dev_snd.is_dir():
        return _warn(
            "sound system",
            detail + " (no sound hardware visible)",
            _NO_SOUND_FIX + "; in a container pass --device /dev/snd",
        )
    if servers and not runtime:
        return _warn(
            "sound system",
            detail,
            "a system unit cannot reach the user's "
            f"{servers[0]}: install a user unit (voiced service install --user) or "
            "use raw ALSA (hw:) devices",
        )
    advice = (
        " (install a user unit: voiced service install --user)"
        if servers
        else " (raw ALSA: the system unit suits this)"
    )
    return _ok("sound system", detail + advice)


def _running_for_user(proc: Path, names: Iterable[str]) -> set[str]:
    """Which of ``names`` run as a process of this user (by /proc/<pid>/comm)."""
    wanted, uid, found = set(names), os.getuid(), set()
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            comm = (entry / "comm").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:  # the process ended meanwhile
            continue
        if comm in wanted:
            found.add(comm)
    return found


def check_audio_devices(settings: Settings) -> list[Finding]:
    """The configured (or default) input and output can be found and accept a format."""
    from voiced.audio.devices import (
        Direction,
        device_of,
        find_device,
        is_device_spec,
        list_devices,
        load_sounddevice,
    )

    wanted: tuple[tuple[Direction, str | None], ...] = (
        ("input", settings.audio.input), ("output", settings.audio.output),
    )  # fmt: skip
    if not any(is_device_spec(spec) for _, spec in wanted):
        return [_ok(f"audio {d}", f"{spec} (not a sound card)") for d, spec in wanted]

    try:
        sd = load_sounddevice()
        devices = list_devices()
    except VoicedError as err:
        return [_warn("audio devices", err.message, err.fix or _NO_SOUND_FIX)]
    if not devices:
        detail = "PortAudio finds no sound devices (fine on a server fed with files)"
        return [_warn("audio devices", detail, _NO_SOUND_FIX)]
    findings: list[Finding] = []
    for direction, spec in wanted:
        name = f"audio {direction}"
        if not is_device_spec(spec):
            findings.append(_ok(name, f"{spec} (not a sound card)"))
            continue
        try:
            info = find_device(device_of(spec), direction)
            check = sd.check_input_settings if direction == "input" else sd.check_output_settings
            check(device=info.index, samplerate=info.default_samplerate_hz, channels=1)
        except VoicedError as err:
            findings.append(_warn(name, err.message.splitlines()[0], err.fix or _NO_SOUND_FIX))
        except Exception as err:  # PortAudioError or ValueError: the format is refused
            detail = f"cannot open mono at the default rate: {err}"
            findings.append(_warn(name, detail, "pick another device: voiced devices"))
        else:
            findings.append(_ok(name, f"{info.name} ({info.default_samplerate_hz} Hz)"))
    return findings


def check_echo_cancel(settings: Settings) -> Finding:
    """Who cancels the speaker's echo: ours, the microphone's own, or nobody."""
    from voiced.audio.devices import is_device_spec, sound_card_name
    from voiced.pipeline.mic_path import EchoCanceller, choose_canceller, looks_echo_cancelled

    audio = settings.audio
    # A file output is time-aligned with the input; a sound card's output is matched
    # with a sound card's input by their clock (a file's frames carry no time).
    speaker = is_device_spec(audio.output)
    microphone = sound_card_name(audio.input)
    sink_has_timeline = not speaker or microphone is not None
    try:
        choice = choose_canceller(audio, sink_has_timeline=sink_has_timeline,
                                  by_clock=speaker, microphone=microphone)  # fmt: skip
    except VoicedError as err:
        return _fail("echo cancel", err.message, err.fix)
    if choice.canceller is EchoCanceller.DEVICE:
        return _ok("echo cancel", f"the microphone's own ({audio.input or 'default'})")
    if looks_echo_cancelled(audio.input):
        # Ours on an already cancelled input finds no echo path, so it never trusts
        # speech over a reply; none ignores speech over a reply.
        ours = "voiced's too" if choice.canceller is EchoCanceller.OURS else "none"
        return _warn(
            "echo cancel", f"{ours}, but the input {audio.input!r} looks echo-cancelled",
            "set [audio] echo_cancel = \"device\" so speech can interrupt a reply",
        )  # fmt: skip
    if choice.canceller is EchoCanceller.OURS:
        suppress = ", noise suppressor on" if audio.noise_suppression else ""
        how = "by the sound card's clock" if speaker else "by stream position"
        return _ok("echo cancel", f"voiced's (WebRTC AEC3, {how}){suppress}")
    barge = " (listen.barge_in_on_speech will hear the replies)" if (
        settings.listen.barge_in_on_speech) else ""  # fmt: skip
    return _warn(
        "echo cancel", f"none: {choice.reason}{barge}",
        "use a microphone that cancels its echo (ReSpeaker USB channel 0, PipeWire's "
        "echo-cancel source; see hardware/asound.conf.example) and set echo_cancel = "
        "\"device\"",
    )  # fmt: skip


# -- MQTT -------------------------------------------------------------------------


def check_mqtt(settings: Settings, timeout_s: float = MQTT_TIMEOUT_S) -> Finding:
    host, port = settings.mqtt.host, settings.mqtt.port
    if not host:
        return _ok("mqtt", "not configured (skipped)")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        return _warn(
            "mqtt",
            f"broker {host}:{port} unreachable: {reason} (voice works; MQTT keeps retrying)",
            f"start the broker (systemctl status mosquitto) or fix mqtt.host/"
            f"mqtt.port; test with `mosquitto_sub -h {host} -p {port} -t '#'`",
        )
    return _ok("mqtt", f"broker {host}:{port} accepts TCP connections")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
