"""Hardware profiles: per-board engine settings read from TOML files.

Built-in profiles ship in ``hardware/`` (``voiced/_data/hardware`` in a wheel).
Users add or override profiles by dropping ``<name>.toml`` files into
``$XDG_CONFIG_HOME/voiced/hardware/`` or ``/etc/voiced/hardware/``; the first
directory holding a name wins, built-ins come last.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_type_hints

import voiced
from voiced import settings as runtime_settings
from voiced.errors import ConfigError

__all__ = [
    "AsrSettings",
    "AudioHints",
    "HardwareProfile",
    "SlmSettings",
    "TtsSettings",
    "WakeSettings",
    "builtin_profile_dir",
    "detect_profile",
    "list_profiles",
    "load_profile",
    "profile_dirs",
]

FALLBACK_PROFILE = "generic-x86"
"""What callers use when ``detect_profile`` finds nothing (x86 has no device tree)."""

DEVICES = frozenset({"cpu", "cuda", "auto"})
COMPUTE_TYPES = frozenset(
    {
        "default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
        "int16", "float16", "bfloat16", "float32",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AsrSettings:
    model: str = "whisper-tiny.en"
    """Model name from the model manifest."""
    device: str = "cpu"
    """"cpu", "cuda" or "auto"."""
    compute_type: str = "int8"
    """CTranslate2 compute type."""
    cpu_threads: int = runtime_settings.AsrSettings().cpu_threads
    """CTranslate2 intra-op threads; 0 lets it choose."""


@dataclass(frozen=True, slots=True)
class SlmSettings:
    model: str = "auto"
    """A tier (small, medium, large), a manifest model, or "auto" (by memory and cores)."""
    device: str = "cpu"
    compute_type: str = "int8"
    """"int8" on CPU, "int8_float16" on CUDA."""
    intra_threads: int = runtime_settings.SlmSettings().intra_threads
    """Threads within one operation; 0 lets the runtime choose."""


@dataclass(frozen=True, slots=True)
class TtsSettings:
    use_cuda: bool = False
    """Run the Piper voice on CUDA (onnxruntime-gpu)."""


@dataclass(frozen=True, slots=True)
class WakeSettings:
    engine: str = runtime_settings.WakeSettings().engine
    """micro, open or both: chosen per board by detection and CPU (README, Wake word)."""


@dataclass(frozen=True, slots=True)
class AudioHints:
    input_device: str | None = None
    """ALSA/PortAudio name of the microphone, e.g. "hw:CARD=seeed2micvoicec,DEV=0"."""
    output_device: str | None = None
    capture_sample_rate_hz: int | None = None
    """Rate to open the microphone at; the pipeline converts to 16 kHz."""
    playback_sample_rate_hz: int | None = None
    echo_cancel: str | None = None
    """[audio] echo_cancel for this board ("device" where the board's microphone
    cancels, "off" where the CPU cannot spare the canceller); None: the default."""
    noise_suppression: bool | None = None


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    description: str
    match: tuple[str, ...]
    """Case-insensitive substrings of the device-tree model (or "tegra")."""
    asr: AsrSettings
    slm: SlmSettings
    tts: TtsSettings
    wake: WakeSettings
    audio: AudioHints
    source: Path
    """The TOML file this profile was read from."""


_T = TypeVar("_T")


# --- locating profiles ----------------------------------------------------


def builtin_profile_dir() -> Path:
    """``voiced/_data/hardware`` in an installed wheel, else the repo's ``hardware/``."""
    packaged = Path(voiced.__file__).parent / "_data" / "hardware"
    if packaged.is_dir():
        return packaged
    return Path(voiced.__file__).parent.parent / "hardware"


def profile_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Directories searched for ``<name>.toml``, highest precedence first."""
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    user_dir = Path(config_home).expanduser() / "voiced" / "hardware"
    return [user_dir, Path("/etc/voiced/hardware"), builtin_profile_dir()]


def _profile_files(search_dirs: Sequence[Path] | None) -> dict[str, Path]:
    """Profile name (file stem) -> file, the first directory winning."""
    found: dict[str, Path] = {}
    for directory in profile_dirs() if search_dirs is None else search_dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def list_profiles(search_dirs: Sequence[Path] | None = None) -> list[str]:
    """Names of every profile found, sorted."""
    return sorted(_profile_files(search_dirs))


# --- loading --------------------------------------------------------------


def load_profile(
    name_or_path: str | Path, *, search_dirs: Sequence[Path] | None = None
) -> HardwareProfile:
    """Load a profile by name (searched in ``search_dirs``) or from a TOML file path.

    Raises ConfigError for an unknown name, unreadable TOML, an unknown key
    (named in the message) or a wrong value.
    """
    path = _resolve(name_or_path, search_dirs)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise ConfigError(f"cannot read hardware profile {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"hardware profile {path} is not valid TOML: {err}",
            fix="compare it with the built-in profiles in " + str(builtin_profile_dir()),
        ) from err
    return _parse(data, path)


def _resolve(name_or_path: str | Path, search_dirs: Sequence[Path] | None) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        return Path(name_or_path).expanduser()
    files = _profile_files(search_dirs)
    if text not in files:
        known = ", ".join(sorted(files)) or "none"
        raise ConfigError(
            f"unknown hardware profile {text!r} (known: {known})",
            fix="pick a known profile, or add <name>.toml to ~/.config/voiced/hardware/",
        )
    return files[text]


def _parse(data: dict[str, Any], path: Path) -> HardwareProfile:
    where = path.name
    _check_keys(data, {"profile", "asr", "slm", "tts", "wake", "audio"}, "", where)
    head = _table(data, "profile", where)
    _check_keys(head, {"name", "description", "match"}, "profile.", where)
    match = head.get("match", [])
    if not isinstance(match, list) or not all(isinstance(m, str) and m for m in match):
        raise _bad(where, "profile.match", "a list of non-empty strings")
    asr = _build(AsrSettings, _table(data, "asr", where), "asr.", where)
    slm = _build(SlmSettings, _table(data, "slm", where), "slm.", where)
    for key, settings in (("asr", asr), ("slm", slm)):
        if settings.device not in DEVICES:
            raise _bad(where, f"{key}.device", " or ".join(sorted(DEVICES)))
        if settings.compute_type not in COMPUTE_TYPES:
            raise _bad(where, f"{key}.compute_type", "one of " + ", ".join(sorted(COMPUTE_TYPES)))
    wake = _build(WakeSettings, _table(data, "wake", where), "wake.", where)
    if wake.engine not in runtime_settings.WAKE_ENGINES:
        raise _bad(where, "wake.engine", " or ".join(sorted(runtime_settings.WAKE_ENGINES)))
    if asr.cpu_threads < 0 or slm.intra_threads < 0:
        raise _bad(where, "asr.cpu_threads/slm.intra_threads", "0 (automatic) or more")
    return HardwareProfile(
        name=_string(head, "name", path.stem, where),
        description=_string(head, "description", "", where),
        match=tuple(match),
        asr=asr,
        slm=slm,
        tts=_build(TtsSettings, _table(data, "tts", where), "tts.", where),
        wake=wake,
        audio=_build(AudioHints, _table(data, "audio", where), "audio.", where),
        source=path,
    )


def _build(cls: type[_T], table: dict[str, Any], prefix: str, where: str) -> _T:
    """Instantiate a settings dataclass, checking key names and value types."""
    hints = get_type_hints(cls)
    _check_keys(table, set(hints), prefix, where)
    for key, value in table.items():
        allowed = [t for t in (get_args(hints[key]) or (hints[key],)) if t is not type(None)]
        # type() rather than isinstance(): a TOML boolean is no thread count.
        if type(value) not in allowed:
            raise _bad(where, prefix + key, "a " + " or ".join(t.__name__ for t in allowed))
        if key.endswith("_hz") and value <= 0:
            raise _bad(where, prefix + key, "a positive rate in Hz")
    return cls(**table)


def _check_keys(table: Mapping[str, Any], allowed: set[str], prefix: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"hardware profile {where}: unknown key {prefix + key!r}",
                fix="known keys here: " + ", ".join(prefix + k for k in sorted(allowed)),
            )


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _bad(where, key, "a table")
    return value


def _string(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise _bad(where, f"profile.{key}", "a string")
    return value


def _bad(where: str, key: str, expected: str) -> ConfigError:
    return ConfigError(f"hardware profile {where}: {key!r} must be {expected}")


# --- detection ------------------------------------------------------------


def detect_profile(
    model_path: Path = Path("/proc/device-tree/model"),
    tegra_path: Path = Path("/etc/nv_tegra_release"),
    *,
    search_dirs: Sequence[Path] | None = None,
) -> str | None:
    """Name of the profile whose ``match`` fits this board, or None.

    The haystack is the device-tree model string, plus "tegra" when
    ``tegra_path`` exists (NVIDIA L4T). The longest matching substring wins,
    so a specific model beats the generic "tegra" fallback. x86 machines have
    no device tree and get None: use ``FALLBACK_PROFILE``.
    """
    haystack = _read_model(model_path)
    if tegra_path.exists():
        haystack += "\ntegra"
    if not haystack.strip():
        return None
    best: tuple[int, str] | None = None
    for name in list_profiles(search_dirs):
        profile = load_profile(name, search_dirs=search_dirs)
        for needle in profile.match:
            if needle.lower() in haystack and (best is None or len(needle) > best[0]):
                best = (len(needle), name)
    return None if best is None else best[1]


def _read_model(model_path: Path) -> str:
    try:
        raw = model_path.read_bytes()
    except OSError:
        return ""
    # The device-tree property is NUL-terminated.
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip().lower()


def settings_overrides(profile: HardwareProfile) -> dict[str, Any]:
    """The profile as a partial config (``[asr]``, ``[slm]``, ``[tts]``, ``[wake]``, ``[audio]``),
    laid under the user's config file, which wins key by key."""
    audio: dict[str, Any] = {}
    if profile.audio.input_device not in (None, "default"):
        audio["input"] = profile.audio.input_device
    if profile.audio.output_device not in (None, "default"):
        audio["output"] = profile.audio.output_device
    if profile.audio.capture_sample_rate_hz is not None:
        audio["capture_sample_rate_hz"] = profile.audio.capture_sample_rate_hz
    for key in ("echo_cancel", "noise_suppression"):
        if getattr(profile.audio, key) is not None:
            audio[key] = getattr(profile.audio, key)
    return {
        "asr": dataclasses.asdict(profile.asr),
        "slm": dataclasses.asdict(profile.slm),
        "tts": dataclasses.asdict(profile.tts),
        "wake": dataclasses.asdict(profile.wake),
        **({"audio": audio} if audio else {}),
    }


def resolve_profile(requested: str | None) -> HardwareProfile | None:
    """``requested`` by name or path; "auto" or None detects the board; "none" skips."""
    if requested == "none":
        return None
    if requested in (None, "auto"):
        detected = detect_profile()
        return load_profile(detected) if detected else None
    return load_profile(requested)
