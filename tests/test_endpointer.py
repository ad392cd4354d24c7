"""Endpointer: every event and edge, fed durations only (no clock, no sleeping)."""

from __future__ import annotations

import pytest

from voiced.errors import ConfigError
from voiced.pipeline.endpointer import (
    Endpointer,
    EndpointerSettings,
    EndpointEvent,
    EndpointEventType,
)
from voiced.pipeline.vad import WebRtcVad

E = EndpointEventType
SETTINGS = EndpointerSettings(
    speech_start_ms=60,
    silence_end_ms=500,
    speculative_silence_ms=150,
    min_speech_ms=300,
    max_speech_ms=15_000,
    timeout_no_speech_ms=8_000,
)


def feed(ep: Endpointer, pattern: str, frame_ms: float = 10.0) -> list[EndpointEvent]:
    """``pattern`` of 'S' (speech), '.' (silence) and 'q' (the VAD still says speech,
    the level is at the noise floor: its hangover) frames; spaces are ignored."""
    events: list[EndpointEvent] = []
    for ch in pattern.replace(" ", ""):
        events += ep.process(ch in "Sq", frame_ms, quiet=ch == "q")
    return events


def speech(ms: int) -> str:
    return "S" * (ms // 10)


def silence(ms: int) -> str:
    return "." * (ms // 10)


def test_command_start_speculative_end_and_end_positions() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, silence(200) + speech(800) + silence(600))
    assert [e.type for e in events] == [E.SPEECH_START, E.SPECULATIVE_END, E.SPEECH_END]
    start, spec, end = events
    assert start.speech_start_sample == 200 * 16  # where speech started, not where it was noticed
    assert start.position_sample == (200 + 60) * 16
    assert spec.speech_end_sample == end.speech_end_sample == 1000 * 16
    assert spec.position_sample == (1000 + 150) * 16
    assert end.position_sample == (1000 + 500) * 16 and not end.forced
    assert end.speech_start_ms == 200 and end.speech_end_ms == 1000
    assert ep.done and not ep.in_speech
    assert feed(ep, speech(1000)) == []  # done until reset


def test_quiet_frames_start_the_speculative_end_but_not_the_end() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, speech(800) + "q" * 8 + silence(600))
    assert [e.type for e in events] == [E.SPEECH_START, E.SPECULATIVE_END, E.SPEECH_END]
    _, spec, end = events
    assert spec.position_sample == (800 + 150) * 16, "quiet counts from the last loud frame"
    assert end.position_sample == (800 + 80 + 500) * 16, "the end waits for the VAD's silence"
    assert end.speech_end_sample == (800 + 80) * 16


def test_only_loud_speech_resumes_a_speculative_end() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, speech(500) + "q" * 20 + silence(50) + "q" * 5)
    assert [e.type for e in events] == [E.SPEECH_START, E.SPECULATIVE_END]
    assert [e.type for e in feed(ep, speech(10))] == [E.SPEECH_RESUMED]


def test_short_blips_are_ignored() -> None:
    ep = Endpointer(SETTINGS)
    assert feed(ep, (speech(50) + silence(10)) * 20) == []
    assert not ep.in_speech
    events = feed(ep, speech(60))
    assert [e.type for e in events] == [E.SPEECH_START]


def test_speech_resumed_after_speculative_end() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, speech(500) + silence(200) + speech(300) + silence(500))
    types = [e.type for e in events]
    assert types == [
        E.SPEECH_START,
        E.SPECULATIVE_END,
        E.SPEECH_RESUMED,
        E.SPECULATIVE_END,
        E.SPEECH_END,
    ]
    assert events[2].position_sample == (500 + 200 + 10) * 16
    assert events[-1].speech_end_sample == 1000 * 16


def test_short_pause_below_speculative_threshold_emits_nothing() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, speech(300) + silence(140) + speech(300))
    assert [e.type for e in events] == [E.SPEECH_START]


def test_min_speech_holds_the_end_back() -> None:
    ep = Endpointer(EndpointerSettings(min_speech_ms=1000, speculative_silence_ms=None))
    events = feed(ep, speech(100) + silence(1000))
    assert [e.type for e in events] == [E.SPEECH_START, E.SPEECH_END]
    assert events[1].position_sample == 1000 * 16  # 1000 ms after start, not 600
    assert events[1].speech_end_sample == 100 * 16


def test_max_speech_forces_the_end() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, speech(20_000))
    assert [e.type for e in events] == [E.SPEECH_START, E.SPEECH_END]
    assert events[1].forced and events[1].position_sample == 15_000 * 16


def test_no_speech_timeout_and_reset() -> None:
    ep = Endpointer(SETTINGS, start_sample=48_000)
    events = feed(ep, silence(7_990))
    assert events == []
    (timeout,) = feed(ep, silence(10))
    assert timeout.type is E.TIMEOUT and timeout.position_sample == 48_000 + 8_000 * 16
    assert timeout.speech_start_sample is None and timeout.speech_end_sample is None
    ep.reset(start_sample=500_000)
    (start,) = feed(ep, speech(60))
    assert start.speech_start_sample == 500_000


def test_timeout_disabled_waits_forever() -> None:
    ep = Endpointer(EndpointerSettings(timeout_no_speech_ms=None))
    assert feed(ep, silence(60_000), frame_ms=30) == []


def test_odd_frame_durations_accumulate_in_samples() -> None:
    ep = Endpointer(SETTINGS)
    events = feed(ep, "SSS" + "." * 20, frame_ms=30)
    assert [e.type for e in events] == [E.SPEECH_START, E.SPECULATIVE_END, E.SPEECH_END]
    assert events[0].position_sample == 60 * 16 and events[-1].position_sample == 600 * 16


def test_event_types_are_strings() -> None:
    assert E.SPEECH_END.value == "speech-end" and str(E.TIMEOUT) == "timeout"
    assert f"{E.SPECULATIVE_END}" == "speculative-end"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"silence_end_ms": 0},
        {"speech_start_ms": -1},
        {"speculative_silence_ms": 600},
        {"max_speech_ms": float("nan")},
    ],
)
def test_bad_settings_name_the_key(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError) as info:
        EndpointerSettings(**kwargs)
    assert any(key in info.value.message for key in kwargs)


def test_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError):
        Endpointer().process(True, -10)


def test_webrtc_vad_on_silence_and_bad_input() -> None:
    vad = WebRtcVad(3)
    assert vad.is_speech(bytes(320)) is False
    with pytest.raises(ValueError):
        vad.is_speech(bytes(100))
    with pytest.raises(ConfigError):
        WebRtcVad(4)
