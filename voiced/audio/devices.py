"""Sound-card discovery: the one place that imports ``sounddevice`` (lazily).

``sounddevice`` loads PortAudio when imported; a machine without PortAudio still
imports voiced and gets an AudioError with the install command only when it
touches a sound card. Tests replace :func:`load_sounddevice` with a fake.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voiced.errors import AudioError

Direction = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate_hz: int
    hostapi: str = ""
    is_default_input: bool = False
    is_default_output: bool = False

    def supports(self, direction: Direction) -> bool:
        channels = self.max_input_channels if direction == "input" else self.max_output_channels
        return channels > 0


def load_sounddevice() -> Any:
    """Import ``sounddevice``; AudioError with the fix when it or PortAudio is missing."""
    try:
        return importlib.import_module("sounddevice")
    except OSError as err:  # sounddevice raises OSError when libportaudio is absent
        raise AudioError(
            f"the PortAudio library is not installed ({err})",
            fix="sudo apt-get install libportaudio2",
        ) from err
    except ImportError as err:
        raise AudioError(
            f"the sounddevice package is not installed ({err})",
            fix="pip install 'sounddevice>=0.5,<0.6'",
        ) from err


PORTAUDIO_LOCK = threading.Lock()
"""Held while a stream is opened and while PortAudio's device list is re-read."""
_open_streams = 0


def stream_started() -> None:
    """A sound-card stream is open (call with PORTAUDIO_LOCK held)."""
    global _open_streams
    _open_streams += 1


def stream_closed() -> None:
    global _open_streams
    with PORTAUDIO_LOCK:
        _open_streams = max(0, _open_streams - 1)


def refresh_device_list_when_idle() -> bool:
    """Re-read PortAudio's device list, which it reads once, when first used: a USB
    microphone plugged in later, or a sound server started later, is not in it.
    Only while no stream is open (re-initialising PortAudio ends every stream);
    True when it was re-read."""
    sd = load_sounddevice()
    with PORTAUDIO_LOCK:
        if _open_streams:
            return False
        try:
            sd._terminate()
            sd._initialize()
        except (AttributeError, sd.PortAudioError):
            return False
    return True


def list_devices() -> list[DeviceInfo]:
    """All PortAudio devices (an empty list on a machine without sound cards)."""
    sd = load_sounddevice()
    try:
        raw = list(sd.query_devices())
        default_in, default_out = _default_indices(sd)
        hostapis = [str(api.get("name", "")) for api in sd.query_hostapis()]
    except sd.PortAudioError as err:
        raise AudioError(
            f"PortAudio cannot list sound devices: {err}",
            fix="check that the sound system (ALSA/PipeWire) is running",
        ) from err
    devices: list[DeviceInfo] = []
    for position, entry in enumerate(raw):
        index = int(entry.get("index", position))
        api = int(entry.get("hostapi", -1))
        devices.append(
            DeviceInfo(
                index=index,
                name=str(entry.get("name", f"device {index}")),
                max_input_channels=int(entry.get("max_input_channels", 0)),
                max_output_channels=int(entry.get("max_output_channels", 0)),
                default_samplerate_hz=round(float(entry.get("default_samplerate", 0.0))),
                hostapi=hostapis[api] if 0 <= api < len(hostapis) else "",
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return devices


def _default_indices(sd: Any) -> tuple[int, int]:
    try:
        default_in, default_out = sd.default.device
    except (TypeError, ValueError):
        return -1, -1
    return _as_index(default_in), _as_index(default_out)


def _as_index(value: object) -> int:
    return value if isinstance(value, int) else -1


def format_device_table(devices: Sequence[DeviceInfo]) -> str:
    """A fixed-width table for ``voiced devices`` (``*`` marks the defaults)."""
    if not devices:
        return "no sound devices found"
    rows = [("", "index", "in", "out", "rate_hz", "name")]
    for dev in devices:
        mark = ("<" if dev.is_default_input else "") + (">" if dev.is_default_output else "")
        name = f"{dev.name} ({dev.hostapi})" if dev.hostapi else dev.name
        rows.append(
            (
                mark,
                str(dev.index),
                str(dev.max_input_channels),
                str(dev.max_output_channels),
                str(dev.default_samplerate_hz),
                name,
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(5)]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(row[:5], widths, strict=True))
        + "  "
        + row[5]
        for row in rows
    ]
    lines.append("< default input, > default output")
    return "\n".join(lines)


def find_device(spec: str | int | None, direction: Direction) -> DeviceInfo:
    """The device ``spec`` names: an index, a PortAudio name (case-insensitive
    substring), an ALSA name (``hw:CARD=USB,DEV=0``, ``plughw:1,0``), ``default`` or None.

    A missing device is an AudioError whose message lists the usable devices.
    """
    devices = list_devices()
    usable = [dev for dev in devices if dev.supports(direction)]
    found = _match(spec, direction, usable)
    if found is None and refresh_device_list_when_idle():
        usable = [dev for dev in list_devices() if dev.supports(direction)]
        found = _match(spec, direction, usable)
    if found is not None:
        return found
    wanted = f"default {direction} device" if spec is None else f"{direction} device {spec!r}"
    listing = (
        "\n".join(f"  {dev.index}: {dev.name}" for dev in usable) or f"  (no {direction} devices)"
    )
    raise AudioError(
        f"no {wanted}; available {direction} devices:\n{listing}",
        fix="pick one with device:INDEX or device:NAME (see `voiced devices`)",
    )


def _match(
    spec: str | int | None, direction: Direction, usable: list[DeviceInfo]
) -> DeviceInfo | None:
    if spec is None:
        defaults = [
            dev
            for dev in usable
            if (dev.is_default_input if direction == "input" else dev.is_default_output)
        ]
        return defaults[0] if defaults else None
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        return next((dev for dev in usable if dev.index == index), None)
    wanted = spec.strip().lower()
    exact = [dev for dev in usable if dev.name.lower() == wanted]
    if not exact and wanted == "default":
        return _match(None, direction, usable)
    hw = alsa_hw_name(spec)
    by_card = [dev for dev in usable if hw and f"({hw})" in dev.name.lower()]
    partial = [dev for dev in usable if wanted in dev.name.lower()]
    matches = exact or by_card or partial
    return matches[0] if matches else None


_ALSA = re.compile(
    r"^(?:plug)?hw:(?:CARD=)?(?P<card>[A-Za-z0-9_-]+)(?:,(?:DEV=)?(?P<dev>\d+))?$",
    re.IGNORECASE,
)
ASOUND = Path("/proc/asound")


def alsa_hw_name(spec: str, asound: Path | None = None) -> str | None:
    """``hw:CARD=USB,DEV=0`` (``arecord -L``) or ``plughw:1,0`` as the ``hw:1,0`` that
    PortAudio puts in its device names; None when ``spec`` is not such a name or
    names no card here. Card names are looked up in /proc/asound."""
    found = _ALSA.match(spec.strip())
    if found is None:
        return None
    card, dev = found["card"], found["dev"] or "0"
    if not card.isdigit():
        try:
            link = ((asound or ASOUND) / card).readlink().name  # /proc/asound/USB -> card1
        except OSError:
            return None
        if not link.startswith("card") or not link[4:].isdigit():
            return None
        card = link[4:]
    return f"hw:{int(card)},{int(dev)}"


def parse_device_spec(spec: str) -> str | int:
    """``device:NAME_OR_INDEX`` to the name or index; AudioError when it names nothing."""
    name = spec.split(":", 1)[1].strip() if ":" in spec else ""
    if not name:
        raise AudioError(f"empty device name in {spec!r}", fix="use device:NAME or device:INDEX")
    return int(name) if name.isdigit() else name


MAX_SPEC_CHARS = 4096
_OTHER_AUDIO_FILE = re.compile(r"\.(mp3|ogg|oga|opus|flac|m4a|aac|aiff?|au|raw|pcm|s16le)$", re.I)


def is_device_spec(spec: str | None) -> bool:
    """False for the specs that are not sound cards: ``-``, ``null`` and ``.wav`` paths."""
    if spec is None:
        return True
    text = spec.strip().lower()
    return not (text == "-" or text == "null" or text.endswith(".wav"))


def sound_card_name(spec: str | None) -> str | None:
    """The name an input or output spec goes by when it is a sound card (``default``
    for None); None for a file, stdin or null."""
    return (spec or "default") if is_device_spec(spec) else None


def device_of(spec: str | None) -> str | int | None:
    """The sound card a device spec names (None: the default), the same for
    ``--input``/``--output``, ``[audio] input``/``output``, ``voiced devices`` and
    ``voiced doctor``: ``device:X``, ``default``, an index, an ALSA name
    (``hw:CARD=USB,DEV=0``) or a PortAudio name. AudioError for a malformed one."""
    if spec is None:
        return None
    text = spec.strip()
    if not text or len(text) > MAX_SPEC_CHARS or "\x00" in text or not is_device_spec(text):
        raise AudioError(
            f"audio device {spec[:60]!r} is empty or malformed",
            fix="use a device name from `voiced devices`, a .wav, '-' or null",
        )
    if text.lower().startswith("device:"):
        return parse_device_spec(text)
    if text.startswith(("/", "./", "~")) or _OTHER_AUDIO_FILE.search(text):
        raise AudioError(f"{text[:200]!r} is neither a device nor a .wav file",
                         fix="convert it: ffmpeg -i IN -ar 16000 -ac 1 OUT.wav")  # fmt: skip
    if text.lower() == "default":
        return None
    return int(text) if text.isdigit() else text
