"""Settings: built once from the TOML config, validated, frozen, passed down.

Every section is a frozen dataclass with units in its field names. Loading
rejects unknown keys and wrong types with a ConfigError that names the key and
the line it is on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiced.engines.wake_names import WAKE_ACTIONS, wake_model_problem, word_name
from voiced.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
DEVICES = frozenset({"cpu", "cuda", "auto"})
COMPUTE_TYPES = frozenset(
    {
        "default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
        "int16", "float16", "bfloat16", "float32",
    }
)  # fmt: skip
"""CTranslate2's compute types."""
WAKE_ENGINES = frozenset({"micro", "open", "both"})
MAX_EXTRA_WAKE_WORDS = 4
ECHO_CANCEL_MODES = frozenset({"auto", "on", "off", "device"})

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant on a small device. Answer in one or two short "
    "spoken sentences. Use plain words only: no lists, no markdown, no emojis, no links."
)

DEFAULT_VOCABULARY_PROMPT = (
    "Volume up. Volume down. Louder. Quieter. Set a timer. Turn on the light."
)


@dataclass(frozen=True, slots=True)
class AsrSettings:
    model: str = "whisper-tiny.en"
    path: str | None = None
    """A faster-whisper model directory of your own, instead of `model`."""
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 1
    """CTranslate2 threads (0: one per core, up to 4). A trimmed window is small
    enough that a second thread gained nothing on 2 cores (179 vs 178 ms) while
    taking the core that speech synthesis and the language model could use."""
    beam_size: int = 1
    """Beam for the stock 30 s window."""
    trimmed_beam_size: int = 2
    """Beam for the trimmed window, where each step is cheap. On 216 utterances,
    with the vocabulary prompt: beam 1 4.4 % WER, beam 2 3.5 %, beam 3 3.7 %
    (stock 30 s window at beam 1: 3.8 %); beam 2 costs about 30 ms more than 1."""
    language: str = "en"
    vocabulary_prompt: str = DEFAULT_VOCABULARY_PROMPT
    """Text Whisper sees as if said just before (trimmed path only): put the words
    your commands use here, device and room names too. "" turns it off. On 216
    utterances it took WER from 4.0 to 3.7 % and fixed "volume up" heard as
    "value up"; a stricter no-speech check keeps noise from decoding to commands."""
    trim_window: bool = True
    """Encode only as much mel window as the audio needs instead of 30 s."""


@dataclass(frozen=True, slots=True)
class TtsSettings:
    voice: str = "piper-en_US-joe-medium"
    path: str | None = None
    """A Piper .onnx voice of your own (its .onnx.json beside it), instead of `voice`."""
    use_cuda: bool = False
    length_scale: float = 1.0
    first_chunk_max_words: int = 3
    """Start speaking after this many words of the first sentence (0: wait for
    the first clause or sentence end). On the 22 benchmark prompts, 3 words instead
    of 5 took the median from 740 to 597 ms (fewer tokens to wait for, a shorter
    first synthesis); the rest of the sentence is ready before those words end."""
    prepare_clock_replies: bool = True
    """Synthesise the time replies for this minute and the next, and today's date
    reply, once a minute while idle, so "what time is it?" is answered without
    waiting for synthesis (about 140 ms of Piper on a 2-core x86 CPU, a minute)."""


@dataclass(frozen=True, slots=True)
class SlmSettings:
    model: str = "auto"
    """A language model from the manifest, a tier (small, medium, large), or "auto":
    the largest tier this machine's memory and cores suit (voiced/models/tiers.py)."""
    path: str | None = None
    """A CTranslate2 generator directory of your own (tokenizer.json beside it)."""
    device: str = "cpu"
    compute_type: str = "int8"
    intra_threads: int = 1
    """CTranslate2 threads (0: one per core, up to 4). A 135M model's matrices are
    so small that thread hand-offs cost more than they save: on 2 cores one thread
    gave 29 ms per token, two gave 47 ms."""
    max_reply_tokens: int = 64
    memory_tokens: int = 128
    """Earlier turns kept as context, oldest dropped first (at most 3, each reply cut
    to its first sentence). Every kept token is read again on each turn: 384 tokens
    of memory made the 0.5B model's first word come 0.9 s later on 2 cores."""
    memory_idle_reset_s: float = 300.0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class WakeWordSettings:
    """One more word beside the wake word ([[wake.words]]), with its own action."""

    model: str = ""
    """A built-in word or a path, as ``wake.model`` (the same ``wake.engine``)."""
    action: str = "stop"
    """stop: end the reply, the ringing timer or the turn in flight without the wake
    word (like the API's stop); wake: another word that starts listening; event:
    nothing is done here, a ``word-heard`` event goes to hooks and MQTT."""


@dataclass(frozen=True, slots=True)
class WakeSettings:
    engine: str = "open"
    """micro (microWakeWord), open (openWakeWord) or both (either one firing wakes).
    open is the default by `voiced bench --wake` (README, Wake word): it heard the
    wake word in far more of the synthetic voices at no more false wakes, for about
    2 % of one core more than micro."""
    model: str = "hey_jarvis"
    """A built-in wake word (hey_jarvis, okay_nabu, hey_mycroft, alexa in both engines;
    hey_rhasspy in open only) or a path: a microWakeWord .json (its .tflite beside it)
    with engine micro, an openWakeWord .tflite with engine open."""
    probability_cutoff: float | None = None
    """microWakeWord: the score over which it fires (None: the model's own, 0.97 for
    hey_jarvis)."""
    threshold: float = 0.5
    """openWakeWord: the score over which it fires."""
    debounce_ms: int = 0
    """openWakeWord: the score must stay over the threshold this long (it scores every
    80 ms; 0 or up to 80: one score is enough)."""
    refractory_ms: int = 2000
    """After a detection, this much audio is ignored by every wake word."""
    words: tuple[WakeWordSettings, ...] = ()
    """More words heard at the same time, each with its action (at most
    MAX_EXTRA_WAKE_WORDS; each costs CPU while there is sound)."""


@dataclass(frozen=True, slots=True)
class ListenSettings:
    vad_aggressiveness: int = 3
    """webrtcvad 0-3; 3 ends speech soonest after the last word (measured: about 100 ms
    less endpoint delay than 2, no WER loss on the benchmark corpus)."""
    speech_start_ms: int = 60
    speculative_silence_ms: int = 60
    """Silence (or quiet, see speculate_on_quiet) after which the turn runs
    speculatively (held until committed). A pause this short inside a sentence
    only costs a discarded transcription, whose decoding is skipped when speech
    resumes before it starts: the
    turn commits early only once that transcription is done (60 ms + ~150 ms of
    silence) and reads as complete. 60 instead of 100 took the benchmark median
    from 572 to 498 ms."""
    speculate_on_quiet: bool = True
    """Also count frames whose level is down at the noise floor as silence for the
    speculative turn, which then need not wait out the VAD's 60-90 ms hangover
    (see voiced/pipeline/quiet.py). The end of the utterance is still the VAD's."""
    silence_end_ms: int = 480
    max_speech_ms: int = 15000
    no_speech_timeout_ms: int = 5000
    follow_up_window_ms: int = 0
    """After a reply, listen this long without the wake word (0: off)."""
    barge_in: bool = True
    """The wake word during a reply stops it."""
    barge_in_on_speech: bool = False
    """Speech during a reply stops it: only with echo cancellation ([audio]
    echo_cancel on, or a microphone that cancels its own echo)."""
    barge_in_min_speech_ms: int = 150
    """Speech over a reply must add up to this long (gaps leak it away slowly)
    before the reply stops: a cough or a door does not cut it."""
    early_commit: bool = True
    """End the utterance at the first pause when its transcript is complete (a local
    intent, or a sentence that does not end on a word like "the" or "of")."""
    ring_window_ms: int = 5000
    """After a timer alert, this long to say "stop" without the wake word (0: none)."""
    alert_rings: int = 1
    """A timer alert is said this many times at most, until someone says "stop" (3
    rings it like a kitchen timer; 1, the default, says it once)."""


@dataclass(frozen=True, slots=True)
class AudioSettings:
    input: str | None = None
    """What ``--input`` accepts (which overrides it): a device (``default``, an ALSA
    name such as ``hw:CARD=USB,DEV=0``, a PortAudio name or index, ``device:NAME``),
    a .wav path, ``-`` (raw PCM on stdin) or ``null`` (silence). None: the default."""
    output: str | None = None
    """What ``--output`` accepts: a device, a .wav path, ``-`` or ``null``."""
    capture_sample_rate_hz: int | None = None
    """Open the microphone at this rate (the profiles say 16000: no resampling);
    a device that refuses it is opened at its default rate. None: the default rate."""
    volume: float = 1.0
    mic_lost_exit_s: float = 0.0
    """Exit non-zero (so systemd restarts us) after the microphone has been gone
    this long; 0 keeps retrying for ever."""
    drain_grace_ms: int = 2000
    """A reply still not played out this long after its audio should have ended
    means the speaker is gone: the turn ends with an error (speaker_lost)."""
    announce_while_muted: bool = True
    """While muted (microphone off), timer alerts and API say still play, as a Home
    Assistant satellite does; false holds them until unmuted."""
    echo_cancel: str = "auto"
    """Cancel the speaker's echo in the microphone (WebRTC AEC3): ``auto`` (on when
    pywebrtc-audio imports and the output's timeline is known), ``on``, ``off``, or
    ``device`` when the microphone already does it (a ReSpeaker's processed channel,
    PipeWire's echo-cancel source): ours stays off and its audio is trusted."""
    noise_suppression: bool = False
    """WebRTC's noise suppressor on the microphone (see the README for its effect
    on Whisper's word error rate)."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: str | None = None
    """HOST:PORT for the HTTP API, or unix:/PATH for a Unix socket (None: off)."""
    token: str | None = None
    """Better in ``token_file``: this file is world-readable for the service."""
    token_file: str | None = None
    """An absolute path, or a systemd credential name (``http_token``)."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str | None = None
    port: int = 1883
    username: str | None = None
    password: str | None = None
    """Better in ``password_file``: this file is world-readable for the service."""
    password_file: str | None = None
    """An absolute path, or a systemd credential name (``mqtt_password``)."""
    tls: bool = False
    ca_file: str | None = None
    device_id: str | None = None
    """Default: the host name and the start of /etc/machine-id (unique per board)."""
    discovery_prefix: str = "homeassistant"
    commands: tuple[str, ...] = ("mute", "stop")
    """Commands the broker may send (say, ask, listen, stop, mute). Anyone who can
    publish on the broker can send them; ask runs intents (a garage door) and
    listen opens the microphone, so they are off unless listed."""
    transcripts: bool = True
    """Publish what was heard and replied (the transcript, reply and intent events,
    Home Assistant's "Last transcript" sensor). Anyone who may subscribe can read
    them: false on a broker without an ACL. Wake, error and state are published."""


@dataclass(frozen=True, slots=True)
class HouseSettings:
    """Several devices in one house, agreeing over the MQTT broker (README, Several rooms)."""

    arbitrate: bool = True
    """With [mqtt] configured: devices that heard the same wake word agree which one
    answers (the one that heard it loudest); the others drop the turn silently."""
    window_ms: int = 200
    """How long after its wake word a device waits for the others' claims, while it
    goes on recording (the user is still speaking, so the wait costs no latency)."""
    area: str = ""
    """This device's room (kitchen, living_room): voiced/room/<area>/say reaches it."""
    rooms: tuple[str, ...] = ()
    """The house's other areas, for "tell the kitchen dinner is ready" (an area's
    underscores are spoken as spaces: living_room is "the living room")."""
    devices: tuple[str, ...] = ()
    """Device ids whose claims count (empty: any device on the broker)."""
    result_timeout_s: float = 3.0
    """A winner says at once that it took the wake; one that has not this long after
    our own wait ended is ignored for distrust_s, so neither a device that crashed nor
    a client forging claims can keep the house deaf."""
    distrust_s: float = 600.0


@dataclass(frozen=True, slots=True)
class WyomingSettings:
    """Home Assistant's Wyoming protocol (voiced.wyoming): off unless ``listen`` is set."""

    listen: str | None = None
    """HOST:PORT to serve on (``:10700`` is loopback; 10700 is the satellites'
    conventional port). Nothing authenticates a Wyoming peer: bind to the LAN only
    where everyone on it may use the assistant."""
    satellite: bool = True
    """Home Assistant may run voiced's turns: voiced's wake word, microphone and
    speaker, Home Assistant's pipeline."""
    asr: bool = True
    """Serve speech-to-text (voiced's Whisper) to any Wyoming client."""
    tts: bool = True
    """Serve text-to-speech (voiced's Piper voice)."""
    wake: bool = True
    """Serve wake-word detection on a client's audio (voiced's wake word)."""
    handle: bool = True
    """Serve conversation: text in, voiced's intents and language model, reply out."""
    area: str = ""
    """The room Home Assistant puts the satellite in (empty: Home Assistant asks)."""
    zeroconf: bool = True
    """Announce the server as ``_wyoming._tcp`` so Home Assistant discovers it (only
    when bound to a non-loopback address)."""
    max_connections: int = 8
    """Connections served at once; more are closed at once."""
    max_audio_s: float = 30.0
    """The longest audio one transcribe request may send (a wake-word stream, kept
    by nobody, runs for as long as its client waits)."""
    allow: tuple[str, ...] = ()
    """The only addresses or networks (``192.168.1.20``, ``192.168.1.0/24``) a
    connection is taken from, e.g. Home Assistant's; empty: any. A satellite's
    peer hears what is said after each wake word: on a shared LAN, list it."""
    queue_wait_s: float = 10.0
    """How long a service request waits for voiced's engine (the local voice path
    and one Wyoming request at a time come first) before it is answered busy."""


@dataclass(frozen=True, slots=True)
class Settings:
    models_dir: str | None = None
    profile: str | None = None
    asr: AsrSettings = field(default_factory=AsrSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    slm: SlmSettings = field(default_factory=SlmSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    house: HouseSettings = field(default_factory=HouseSettings)
    wyoming: WyomingSettings = field(default_factory=WyomingSettings)
    intent: tuple[dict[str, Any], ...] = ()
    """User intents ([[intent]] tables), validated by the intents module."""
    hook: tuple[dict[str, Any], ...] = ()
    """Event hooks ([[hook]] tables), validated by the hooks module."""


def load_settings(path: Path | None, base: dict[str, Any] | None = None) -> Settings:
    """Settings from ``path`` (None: defaults), laid over ``base`` (profile values)."""
    if path is None:
        return build(Settings, base or {}, (), _Locator("", "hardware profile"))
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    return parse_settings(text, source=str(path), base=base)


def read_profile_key(path: Path | None) -> str | None:
    """The config's ``profile`` key, read before the profile is applied."""
    if path is None:
        return None
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("profile")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_settings reports it properly
    return value if isinstance(value, str) else None


def parse_settings(
    text: str, source: str = "<config>", base: dict[str, Any] | None = None
) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    return build(Settings, _merged(base or {}, data), (), _Locator(text, source))


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def replace_section(settings: Settings, section: str, **changes: Any) -> Settings:
    """A copy of ``settings`` with some fields of one section changed (for CLI flags)."""
    current = getattr(settings, section)
    return dataclasses.replace(settings, **{section: dataclasses.replace(current, **changes)})


class _Locator:
    """Finds the line a key was written on, so errors can point at it.

    Keys are matched by their full path (table header plus dotted key), so
    `device` under ``[asr]`` is not confused with `device` under ``[slm]``.
    """

    _HEADER = re.compile(r"^\s*\[\[?(?P<name>[^\]]+)\]\]?")
    _KEY = re.compile(r"^\s*(?P<key>[^=\[#\s{},][^=]*?)\s*=")
    _PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string = False
        for number, line in enumerate(text.splitlines(), start=1):
            was_in_string = in_string
            in_string ^= (line.count('"""') + line.count("'''")) % 2 == 1
            if was_in_string:
                continue  # inside a multi-line string: no keys here
            if header := self._HEADER.match(line):
                table = self._parts(header["name"])
                self.lines.setdefault(table, number)
            elif key := self._KEY.match(line):
                self.lines.setdefault((*table, *self._parts(key["key"])), number)

    def _parts(self, dotted: str) -> tuple[str, ...]:
        matches = self._PART.finditer(dotted)
        return tuple(next(g for g in m.groups() if g is not None) for m in matches)

    def where(self, key_path: tuple[str, ...]) -> str:
        """``source, line N`` of the key, else of the nearest enclosing table or key."""
        for end in range(len(key_path), 0, -1):
            number = self.lines.get(key_path[:end])
            if number is not None:
                return f"{self.source}, line {number}"
        return self.source


T = typing.TypeVar("T")


def build(cls: type[T], data: object, key_path: tuple[str, ...], locator: _Locator) -> T:
    dotted = ".".join(key_path) or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{locator.where(key_path)}: `{dotted}` must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = (*key_path, key)
        if key not in names:
            raise ConfigError(
                f"{locator.where(path)}: unknown key `{'.'.join(path)}`",
                fix=f"valid keys here: {', '.join(sorted(names))}",
            )
        values[key] = _coerce(hints[key], value, path, locator)
        _check_value(path, values[key], locator)
    result = cls(**values)
    if isinstance(result, ListenSettings):
        _check_listen(result, data, key_path, locator)
    if isinstance(result, WakeSettings):
        _check_wake(result, data, key_path, locator)
    if isinstance(result, HouseSettings):
        _check_house(result, key_path, locator)
    if isinstance(result, WyomingSettings):
        if result.listen is not None:
            _check_host_port(result.listen, (*key_path, "listen"), locator)
        _check_networks(result.allow, (*key_path, "allow"), locator)
    return result


def _coerce(hint: Any, value: object, path: tuple[str, ...], locator: _Locator) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path, locator)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(options[0], value, path, locator)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            if not isinstance(value, list):
                raise _type_error(path, "a list of tables ([[...]])", value, locator)
            return tuple(build(item, v, path, locator) for v in value)  # type: ignore[arg-type]
        want = "a list of strings" if item is str else "a list of tables ([[...]])"
        if not isinstance(value, list) or not all(
            isinstance(v, str if item is str else dict) for v in value
        ):
            raise _type_error(path, want, value, locator)
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str) and (type(value) is not hint):
        raise _type_error(path, hint.__name__, value, locator)
    return value


def _type_error(path: tuple[str, ...], want: str, value: object, locator: _Locator) -> ConfigError:
    return ConfigError(
        f"{locator.where(path)}: `{'.'.join(path)}` must be {want}, "
        f"not {type(value).__name__} {value!r:.40}"
    )


@dataclass(frozen=True, slots=True)
class _Range:
    """Allowed values of a number: ``low`` to ``high`` (None: unbounded), ends included
    unless ``open_ends``."""

    low: float
    high: float | None = None
    open_ends: bool = False

    def __contains__(self, value: float) -> bool:
        high = float("inf") if self.high is None else self.high
        if self.open_ends:
            return self.low < value < high
        return self.low <= value <= high  # False for NaN

    def __str__(self) -> str:
        if self.high is None:
            return f"{self.low:g} or more"
        if self.open_ends:
            return f"strictly between {self.low:g} and {self.high:g}"
        return f"between {self.low:g} and {self.high:g}"


_NON_NEGATIVE = _Range(0)
_RANGES: dict[str, _Range] = {
    "asr.cpu_threads": _NON_NEGATIVE,
    "asr.beam_size": _Range(1, 10),
    "asr.trimmed_beam_size": _Range(1, 10),
    "tts.length_scale": _Range(0, 10, open_ends=True),
    "slm.intra_threads": _NON_NEGATIVE,
    "slm.max_reply_tokens": _Range(1, 1024),
    "slm.memory_tokens": _NON_NEGATIVE,
    "slm.memory_idle_reset_s": _NON_NEGATIVE,
    "wake.probability_cutoff": _Range(0, 1, open_ends=True),
    "wake.refractory_ms": _Range(0, 60_000),
    "wake.threshold": _Range(0, 1, open_ends=True),
    "wake.debounce_ms": _Range(0, 2_000),
    "listen.vad_aggressiveness": _Range(0, 3),
    "listen.speech_start_ms": _NON_NEGATIVE,
    "listen.speculative_silence_ms": _NON_NEGATIVE,
    "listen.silence_end_ms": _Range(1),
    "listen.max_speech_ms": _Range(1),
    "listen.no_speech_timeout_ms": _NON_NEGATIVE,
    "listen.follow_up_window_ms": _NON_NEGATIVE,
    "listen.ring_window_ms": _Range(0, 60_000),
    "listen.alert_rings": _Range(1, 20),
    "audio.drain_grace_ms": _Range(100, 60_000),
    "audio.volume": _Range(0, 1),
    "tts.first_chunk_max_words": _Range(0, 100),
    "audio.mic_lost_exit_s": _Range(0, 86_400),
    "audio.capture_sample_rate_hz": _Range(8000, 192_000),
    "listen.barge_in_min_speech_ms": _Range(30, 2_000),
    "mqtt.port": _Range(1, 65535),
    "house.window_ms": _Range(0, 2000),
    "house.result_timeout_s": _Range(0.5, 60),
    "house.distrust_s": _Range(0, 86_400),
    "wyoming.max_connections": _Range(1, 64),
    "wyoming.max_audio_s": _Range(1, 120),
    "wyoming.queue_wait_s": _Range(0, 300),
}
"""Ranges of numeric settings, by dotted key."""
_CHOICES: dict[str, frozenset[str]] = {
    "asr.device": DEVICES,
    "asr.compute_type": COMPUTE_TYPES,
    "slm.device": DEVICES,
    "slm.compute_type": COMPUTE_TYPES,
    "wake.engine": WAKE_ENGINES,
    "wake.words.action": frozenset(WAKE_ACTIONS),
    "audio.echo_cancel": ECHO_CANCEL_MODES,
}
_ITEM_CHOICES: dict[str, frozenset[str]] = {
    "mqtt.commands": frozenset({"say", "ask", "listen", "stop", "mute"}),
}
"""Allowed items of list settings, by dotted key."""
"""Allowed values of string settings, by dotted key."""
_MAX_CHARS: dict[str, int] = {
    "asr.vocabulary_prompt": 1000, "slm.system_prompt": 4000, "wyoming.area": 100,
}  # fmt: skip
"""Longest text settings; Whisper keeps only ~220 tokens of prompt anyway."""


def _check_value(path: tuple[str, ...], value: object, locator: _Locator) -> None:
    dotted = ".".join(path)
    allowed = _RANGES.get(dotted)
    if allowed is not None and isinstance(value, int | float) and value not in allowed:
        raise ConfigError(f"{locator.where(path)}: `{dotted}` must be {allowed}, not {value!r}")
    longest = _MAX_CHARS.get(dotted)
    if longest is not None and isinstance(value, str) and len(value) > longest:
        raise ConfigError(
            f"{locator.where(path)}: `{dotted}` is {len(value)} characters; at most {longest}"
        )
    items = _ITEM_CHOICES.get(dotted)
    if items is not None and isinstance(value, tuple) and not set(value) <= items:
        bad = next(v for v in value if v not in items)
        raise ConfigError(
            f"{locator.where(path)}: `{dotted}` may list {', '.join(sorted(items))}, "
            f"not {bad!r:.40}"
        )
    choices = _CHOICES.get(dotted)
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{locator.where(path)}: `{dotted}` must be one of "
            f"{', '.join(sorted(choices))}, not {value!r:.40}"
        )


def _check_listen(
    listen: ListenSettings, data: dict[str, Any], key_path: tuple[str, ...], locator: _Locator
) -> None:
    """The endpointer needs the speculative end (0: off) before the final one."""
    early, final = listen.speculative_silence_ms, listen.silence_end_ms
    if early and early >= final:
        key = "speculative_silence_ms" if "speculative_silence_ms" in data else "silence_end_ms"
        raise ConfigError(
            f"{locator.where((*key_path, key))}: `listen.speculative_silence_ms` ({early}) "
            f"must be less than `listen.silence_end_ms` ({final})",
            fix="lower listen.speculative_silence_ms, or set it to 0 to turn it off",
        )


TOPIC_NAME = re.compile(r"[a-z0-9_-]{1,64}")
"""A device id or an area as it appears in an MQTT topic level."""


def _check_house(house: HouseSettings, key_path: tuple[str, ...], locator: _Locator) -> None:
    """Areas and device ids become topic levels: no wildcards, slashes or spaces."""
    named = (("area", (house.area,) if house.area else ()), ("rooms", house.rooms),
             ("devices", house.devices))  # fmt: skip
    for key, values in named:
        for value in values:
            if not TOPIC_NAME.fullmatch(value):
                raise ConfigError(
                    f"{locator.where((*key_path, key))}: `house.{key}` {value!r:.40} must be "
                    "1-64 of a-z, 0-9, _ and -",
                    fix="e.g. living_room",
                )


def _check_wake(
    wake: WakeSettings, data: dict[str, Any], key_path: tuple[str, ...], locator: _Locator
) -> None:
    """The wake word must be one the engine has (or a file of the engine's kind)."""
    problem = wake_model_problem(wake.engine, wake.model)
    if problem is not None:
        key = "model" if "model" in data else "engine"
        raise ConfigError(
            f"{locator.where((*key_path, key))}: `wake.model` {wake.model!r:.60}: {problem}",
            fix="change wake.model or wake.engine",
        )
    where = locator.where((*key_path, "words"))
    if len(wake.words) > MAX_EXTRA_WAKE_WORDS:
        raise ConfigError(
            f"{where}: `wake.words` lists {len(wake.words)} words; at most "
            f"{MAX_EXTRA_WAKE_WORDS} (each one is scored on every frame)",
            fix="remove some [[wake.words]]",
        )
    names = {word_name(wake.model): "wake.model"}
    for index, word in enumerate(wake.words, start=1):
        label = f"[[wake.words]] number {index}"
        problem = wake_model_problem(wake.engine, word.model) if word.model else "it is missing"
        if problem is not None:
            raise ConfigError(
                f"{where}: {label}: `model` {word.model!r:.60}: {problem}",
                fix="give each [[wake.words]] a model the wake engine has",
            )
        name = word_name(word.model)
        if name in names:
            raise ConfigError(
                f"{where}: {label}: `model` {word.model!r:.60} is the same word as "
                f"{names[name]} ({name!r:.40}); each word must be heard apart",
                fix="use another word, or a file with another name",
            )
        names[name] = label


def parse_host_port(value: str, default_host: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:10700``; ``:10700`` for ``default_host``) -> (host, port);
    None when it is not one."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return None
    return host.strip("[]") or default_host, int(port_text)


def _check_host_port(value: str, path: tuple[str, ...], locator: _Locator) -> None:
    if parse_host_port(value, "127.0.0.1") is None:
        dotted = ".".join(path)
        raise ConfigError(
            f"{locator.where(path)}: `{dotted}` must be HOST:PORT, not {value!r:.60}",
            fix='e.g. ":10700" (loopback) or "0.0.0.0:10700" (the LAN)',
        )


def _check_networks(values: tuple[str, ...], path: tuple[str, ...], locator: _Locator) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as err:
            raise ConfigError(
                f"{locator.where(path)}: `{'.'.join(path)}` lists {value!r:.60}, not an "
                f"address or network: {err}",
                fix='e.g. allow = ["192.168.1.20"] (Home Assistant) or ["192.168.1.0/24"]',
            ) from None
