"""voiced.settings: the TOML config, parsed once, checked key by key with lines named."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from voiced import settings as settings_module
from voiced.errors import ConfigError
from voiced.models.manifest import Role, load_manifest
from voiced.settings import (
    MAX_CONFIG_BYTES,
    Settings,
    WakeWordSettings,
    load_settings,
    parse_host_port,
    parse_settings,
)

REPO = Path(__file__).resolve().parent.parent

# A value different from the default for every key of every section.
EVERY_KEY: dict[str, dict[str, Any]] = {
    "asr": {
        "model": "whisper-base", "path": "/opt/asr", "device": "cuda",
        "compute_type": "float16", "cpu_threads": 4, "beam_size": 5, "language": "de",
        "trim_window": False, "trimmed_beam_size": 4, "vocabulary_prompt": "Kitchen light.",
    },
    "tts": {"voice": "my-voice", "path": "/opt/v.onnx", "use_cuda": True, "length_scale": 1.25,
            "first_chunk_max_words": 8, "prepare_clock_replies": False},
    "slm": {
        "model": "my-slm", "path": "/opt/slm", "device": "auto", "compute_type": "int8_float32",
        "intra_threads": 2, "max_reply_tokens": 128, "memory_tokens": 100,
        "memory_idle_reset_s": 60.5, "system_prompt": "Be brief.", "enabled": False,
    },
    "wake": {
        "engine": "micro", "model": "okay_nabu", "probability_cutoff": 0.75,
        "threshold": 0.6, "debounce_ms": 160, "refractory_ms": 1500,
        "words": (WakeWordSettings("alexa", "stop"),),
    },
    "listen": {
        "vad_aggressiveness": 1, "speech_start_ms": 90, "speculative_silence_ms": 200,
        "silence_end_ms": 600, "max_speech_ms": 10000, "no_speech_timeout_ms": 4000,
        "follow_up_window_ms": 3000, "barge_in": False, "barge_in_on_speech": True,
        "barge_in_min_speech_ms": 250,
        "early_commit": False, "speculate_on_quiet": False, "ring_window_ms": 8000,
        "alert_rings": 3,
    },
    "audio": {"input": "hw:1", "output": "hw:2", "volume": 0.5, "mic_lost_exit_s": 120.0,
              "capture_sample_rate_hz": 48000, "drain_grace_ms": 3000,
              "announce_while_muted": False, "echo_cancel": "off", "noise_suppression": True},
    "http": {"listen": "127.0.0.1:8400", "token": "secret", "token_file": "http_token"},
    "mqtt": {
        "host": "broker", "port": 8883, "username": "u", "password": "p", "tls": True,
        "ca_file": "/etc/ca.pem", "device_id": "kitchen", "discovery_prefix": "ha",
        "password_file": "/etc/voiced/credentials/mqtt_password", "commands": ("say", "mute"),
        "transcripts": False,
    },
    "wyoming": {
        "listen": "0.0.0.0:10700", "satellite": False, "asr": False, "tts": False,
        "wake": False, "handle": False, "area": "Kitchen", "zeroconf": False,
        "max_connections": 4, "max_audio_s": 20.0, "queue_wait_s": 3.0,
        "allow": ("192.168.1.20", "10.0.0.0/8"),
    },
}  # fmt: skip
EVERY_KEY["house"] = {
    "arbitrate": False, "window_ms": 300, "area": "kitchen", "rooms": ("hall",),
    "devices": ("kitchen", "hall"), "result_timeout_s": 5.0, "distrust_s": 60.0,
}  # fmt: skip
TOP_LEVEL: dict[str, Any] = {"models_dir": "/var/lib/voiced/models", "profile": "rpi5"}
SECTIONS = [k for k, v in typing.get_type_hints(Settings).items() if dataclasses.is_dataclass(v)]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value).items()
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in fields) + "}"
    return repr(value)


def toml(top: dict[str, Any], sections: dict[str, dict[str, Any]]) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="voiced.toml")
    assert caught.value.exit_code == 2
    return caught.value.render()


# Defaults and every key.


def test_empty_config_is_the_defaults() -> None:
    assert parse_settings("") == Settings()
    assert load_settings(None) == Settings()


def test_default_models_are_the_manifest_defaults() -> None:
    manifest, defaults = load_manifest(), Settings()
    assert defaults.asr.model == manifest.default_for(Role.ASR).name
    assert defaults.tts.voice == manifest.default_for(Role.TTS).name
    assert defaults.slm.model == "auto"  # the machine's tier, see test_tiers.py
    assert manifest.default_for(Role.SLM).tier == "medium"
    assert defaults.wake.model == "hey_jarvis"


def test_the_test_table_names_every_key_with_a_non_default_value() -> None:
    defaults = Settings()
    assert set(EVERY_KEY) == set(SECTIONS)
    for section, values in EVERY_KEY.items():
        fields = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        assert set(values) == fields, section
        for key, value in values.items():
            assert getattr(getattr(defaults, section), key) != value, f"{section}.{key}"


def test_every_section_and_key_parses() -> None:
    parsed = parse_settings(toml(TOP_LEVEL, EVERY_KEY))
    for key, value in TOP_LEVEL.items():
        assert getattr(parsed, key) == value
    for section, values in EVERY_KEY.items():
        for key, value in values.items():
            got = getattr(getattr(parsed, section), key)
            assert got == value and type(got) is type(value), f"{section}.{key}"


def test_settings_are_frozen() -> None:
    parsed = parse_settings("[asr]\nbeam_size = 2\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.asr.beam_size = 3  # type: ignore[misc]


def test_intent_and_hook_tables_are_kept_in_order() -> None:
    parsed = parse_settings(
        '[[intent]]\nname = "a"\nsay = "one"\n'
        '[[intent]]\nname = "b"\nphrases = ["x", "y"]\n'
        '[[hook]]\nevent = "run-end"\nurl = "http://127.0.0.1:1/"\n'
    )
    assert parsed.intent == ({"name": "a", "say": "one"}, {"name": "b", "phrases": ["x", "y"]})
    assert parsed.hook == ({"event": "run-end", "url": "http://127.0.0.1:1/"},)


def test_intent_must_be_a_list_of_tables() -> None:
    message = config_error('intent = "lights"\n')
    assert "voiced.toml, line 1: `intent` must be a list of tables" in message


# Unknown keys and wrong types name the key and its line.


def test_unknown_top_level_key() -> None:
    message = config_error('# comment\nmodels_dir = "/m"\nmodel_dir = "/m"\n')
    assert "error[config]: voiced.toml, line 3: unknown key `model_dir`" in message
    assert "models_dir" in message, "the fix lists the valid keys"


def test_unknown_section() -> None:
    message = config_error("[asr]\nbeam_size = 2\n\n[speaker]\nvolume = 1\n")
    assert "voiced.toml, line 4: unknown key `speaker`" in message


def test_unknown_nested_key_names_the_line_in_its_own_section() -> None:
    text = '[slm]\ndevice = "cpu"\nbeam = 1\n\n[asr]\ndevice = "cpu"\nbeam = 2\n'
    message = config_error(text)
    assert "voiced.toml, line 3: unknown key `slm.beam`" in message
    assert "fix: valid keys here: compute_type, device," in message
    message = config_error("[asr]\nbeam = 2\n\n[slm]\nbeam = 1\n")
    assert "voiced.toml, line 2: unknown key `asr.beam`" in message


def test_wrong_type_names_the_key_in_the_right_section() -> None:
    """`device` also appears (correctly) under [slm] first: the error points at [asr]'s."""
    text = '[slm]\ndevice = "cpu"\n\n[asr]\nmodel = "whisper-base"\ndevice = 5\n'
    message = config_error(text)
    assert "voiced.toml, line 6: `asr.device` must be str, not int 5" in message


def test_lines_inside_a_multi_line_string_are_not_keys() -> None:
    text = '[slm]\nsystem_prompt = """\nmax_reply_tokens = 5\n"""\nmax_reply_tokens = "many"\n'
    message = config_error(text)
    assert "voiced.toml, line 5: `slm.max_reply_tokens` must be int" in message


def test_dotted_and_inline_keys_are_located() -> None:
    assert "line 2: unknown key `asr.beam`" in config_error('profile = "x"\nasr.beam = 2\n')
    message = config_error('profile = "x"\nlisten = { barge_in = "yes" }\n')
    assert "line 2: `listen.barge_in` must be bool" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[asr]\nbeam_size = "2"\n', "`asr.beam_size` must be int, not str '2'"),
        ("[asr]\nbeam_size = 2.0\n", "`asr.beam_size` must be int, not float 2.0"),
        ("[asr]\nbeam_size = true\n", "`asr.beam_size` must be int, not bool True"),
        ("[listen]\nbarge_in = 1\n", "`listen.barge_in` must be bool, not int 1"),
        ('[tts]\nlength_scale = "fast"\n', "`tts.length_scale` must be float, not str"),
        ("[tts]\nlength_scale = true\n", "`tts.length_scale` must be float, not bool"),
        ("[wake]\nmodel = 1\n", "`wake.model` must be str, not int 1"),
        ("[asr]\npath = false\n", "`asr.path` must be str, not bool False"),
        ("asr = 5\n", "`asr` must be a table"),
        ("models_dir = 1\n", "`models_dir` must be str"),
    ],
)
def test_wrong_type(text: str, fragment: str) -> None:
    message = config_error("# voiced\n" + text)
    assert fragment in message
    last_line = len(text.splitlines()) + 1  # the comment comes first
    assert f"voiced.toml, line {last_line}:" in message


def test_int_is_accepted_for_float() -> None:
    parsed = parse_settings("[tts]\nlength_scale = 2\n[wake]\nprobability_cutoff = 1e-1\n")
    assert parsed.tts.length_scale == 2.0 and type(parsed.tts.length_scale) is float
    assert parsed.wake.probability_cutoff == 0.1


def test_invalid_toml_names_the_line() -> None:
    message = config_error('[asr]\nbeam_size = 2\nmodel = "unterminated\n')
    assert "voiced.toml: not valid TOML" in message
    assert "line 3" in message


# Range validation.


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("listen", "vad_aggressiveness", 4, "between 0 and 3"),
        ("listen", "vad_aggressiveness", -1, "between 0 and 3"),
        ("wake", "probability_cutoff", 0, "strictly between 0 and 1"),
        ("wake", "probability_cutoff", 1.0, "strictly between 0 and 1"),
        ("wake", "probability_cutoff", float("nan"), "strictly between 0 and 1"),
        ("wake", "refractory_ms", -1, "between 0 and 60000"),
        ("listen", "speech_start_ms", -10, "0 or more"),
        ("listen", "no_speech_timeout_ms", -1, "0 or more"),
        ("listen", "follow_up_window_ms", -1, "0 or more"),
        ("listen", "silence_end_ms", 0, "1 or more"),
        ("listen", "max_speech_ms", 0, "1 or more"),
        ("slm", "max_reply_tokens", 0, "between 1 and 1024"),
        ("slm", "max_reply_tokens", 1025, "between 1 and 1024"),
        ("slm", "memory_idle_reset_s", -0.5, "0 or more"),
        ("slm", "intra_threads", -1, "0 or more"),
        ("asr", "cpu_threads", -2, "0 or more"),
        ("audio", "volume", 1.5, "between 0 and 1"),
        ("audio", "volume", -0.1, "between 0 and 1"),
        ("asr", "beam_size", 0, "between 1 and 10"),
        ("asr", "beam_size", 11, "between 1 and 10"),
        ("asr", "trimmed_beam_size", 0, "between 1 and 10"),
        ("tts", "length_scale", 0, "strictly between 0 and 10"),
        ("mqtt", "port", 0, "between 1 and 65535"),
        ("mqtt", "port", 70000, "between 1 and 65535"),
    ],
)
def test_out_of_range(section: str, key: str, value: float, allowed: str) -> None:
    literal = "nan" if value != value else repr(value)
    message = config_error(f'profile = "x"\n\n[{section}]\n{key} = {literal}\n')
    assert f"error[config]: voiced.toml, line 4: `{section}.{key}` must be {allowed}, not" in (
        message
    )


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("listen", "vad_aggressiveness", 0),
        ("listen", "vad_aggressiveness", 3),
        ("wake", "probability_cutoff", 0.01),
        ("wake", "probability_cutoff", 0.99),
        ("slm", "max_reply_tokens", 1),
        ("slm", "max_reply_tokens", 1024),
        ("audio", "volume", 0),
        ("audio", "volume", 1),
        ("asr", "beam_size", 1),
        ("asr", "beam_size", 10),
        ("listen", "speculative_silence_ms", 0),
        ("listen", "follow_up_window_ms", 0),
        ("mqtt", "port", 65535),
    ],
)
def test_in_range_edges(section: str, key: str, value: float) -> None:
    parsed = parse_settings(f"[{section}]\n{key} = {value!r}\n")
    assert getattr(getattr(parsed, section), key) == value


@pytest.mark.parametrize(
    ("key", "value"),
    [("asr.device", "gpu"), ("slm.device", "CUDA"), ("asr.compute_type", "int4"),
     ("slm.compute_type", "fp16")],
)  # fmt: skip
def test_unknown_device_or_compute_type(key: str, value: str) -> None:
    section, name = key.split(".")
    message = config_error(f'[{section}]\n{name} = "{value}"\n')
    assert f"voiced.toml, line 2: `{key}` must be one of " in message
    assert f"not '{value}'" in message
    assert ("cpu, cuda" if name == "device" else "int8_float16") in message


@pytest.mark.parametrize("compute_type", sorted(settings_module.COMPUTE_TYPES))
def test_every_ctranslate2_compute_type_is_accepted(compute_type: str) -> None:
    parsed = parse_settings(f'[asr]\ncompute_type = "{compute_type}"\n[slm]\ndevice = "auto"\n')
    assert parsed.asr.compute_type == compute_type


def test_speculative_end_must_come_before_the_final_end() -> None:
    message = config_error("[listen]\nsilence_end_ms = 400\nspeculative_silence_ms = 400\n")
    assert "voiced.toml, line 3: `listen.speculative_silence_ms` (400) must be less than" in message
    # Only the final end was written: that is the line to blame.
    message = config_error("[listen]\nsilence_end_ms = 50\n")
    assert "voiced.toml, line 2: `listen.speculative_silence_ms` (60) must be less" in message
    assert parse_settings("[listen]\nsilence_end_ms = 50\nspeculative_silence_ms = 0\n")


@pytest.mark.parametrize(("key", "longest"), sorted(settings_module._MAX_CHARS.items()))
def test_text_settings_have_a_length_limit(key: str, longest: int) -> None:
    section, name = key.split(".")
    assert parse_settings(f'[{section}]\n{name} = "{"a" * longest}"\n')
    message = config_error(f'[{section}]\n{name} = "{"a" * (longest + 1)}"\n')
    assert f"voiced.toml, line 2: `{key}` is {longest + 1} characters; at most {longest}" in (
        message
    )


def test_range_tables_name_real_keys_and_allow_the_defaults() -> None:
    defaults = Settings()
    for dotted in (
        *settings_module._RANGES,
        *settings_module._CHOICES,
        *settings_module._MAX_CHARS,
    ):
        section, key, *item_key = dotted.split(".")
        holder = getattr(defaults, section)
        assert hasattr(holder, key), dotted
        if item_key:  # a key of the tables in a list, e.g. wake.words.action
            item = typing.get_args(typing.get_type_hints(type(holder))[key])[0]
            assert item_key[0] in {f.name for f in dataclasses.fields(item)}, dotted
    for dotted, allowed in settings_module._RANGES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(defaults, section), key)
        assert value is None or value in allowed, dotted


# Files.


def test_load_settings_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "voiced.toml"
    path.write_text("[asr]\nbeam_size = 3\n", encoding="utf-8")
    assert load_settings(path).asr.beam_size == 3
    path.write_text("[asr]\nbeam_size = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}, line 2: `asr.beam_size`")):
        load_settings(path)


def test_config_over_one_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_settings(path)
    path.write_text("# " + "x" * (MAX_CONFIG_BYTES - 100) + "\n", encoding="utf-8")
    assert load_settings(path) == Settings(), "just under the limit is fine"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*absent\.toml does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_non_utf8_config_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[slm]\nsystem_prompt = "Sé bref."\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read config file .*latin1\.toml.*utf-8"):
        load_settings(path)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path)


def test_shipped_example_config_parses() -> None:
    load_settings(REPO / "systemd" / "voiced.example.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[wyoming]\nlisten = "10700"', "must be HOST:PORT"),
        ('[wyoming]\nlisten = "host:99999"', "must be HOST:PORT"),
        ("[wyoming]\nmax_connections = 0", "`wyoming.max_connections` must be between 1"),
        ("[wyoming]\nmax_audio_s = 1000", "`wyoming.max_audio_s` must be between 1"),
        (f'[wyoming]\narea = "{"x" * 101}"', "`wyoming.area` is 101 characters"),
        ('[wyoming]\nallow = ["192.168.1.300"]', "not an address or network"),
        ('[wyoming]\nallow = ["homeassistant.local"]', "not an address or network"),
    ],
)
def test_wyoming_settings_are_checked(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(text)


def test_wyoming_is_off_by_default_and_its_short_listen_is_loopback() -> None:
    assert Settings().wyoming.listen is None
    assert parse_host_port(":10700", "127.0.0.1") == ("127.0.0.1", 10700)
    assert parse_host_port("[::1]:10700", "127.0.0.1") == ("::1", 10700)
