"""The noise-floor gate on synthetic levels, and on real speech through the real VAD."""

from __future__ import annotations

import numpy as np
import pytest

from voiced.audio.format import FRAME_SAMPLES
from voiced.engines.tts import PiperTts
from voiced.pipeline.endpointer import Endpointer, EndpointerSettings, EndpointEventType
from voiced.pipeline.quiet import QUIET_MIN_RMS, QuietGate
from voiced.pipeline.vad import WebRtcVad
from voiced.speech_synth import compose

E = EndpointEventType


def frame(rms: float, rng: np.random.Generator) -> bytes:
    return np.clip(rng.normal(0.0, rms, FRAME_SAMPLES), -32768, 32767).astype("<i2").tobytes()


def test_quiet_means_near_the_noise_floor() -> None:
    rng = np.random.default_rng(0)
    gate = QuietGate()
    assert all(gate.is_quiet(frame(200, rng)) for _ in range(50)), "the room's level"
    assert not gate.is_quiet(frame(2000, rng)), "20 dB above the room"
    assert gate.is_quiet(frame(230, rng)), "back at the room's level"


def test_digital_silence_is_quiet_and_empty_input_too() -> None:
    gate = QuietGate()
    assert gate.is_quiet(bytes(FRAME_SAMPLES * 2))
    rng = np.random.default_rng(1)
    assert not gate.is_quiet(frame(QUIET_MIN_RMS * 3, rng))
    assert gate.is_quiet(b"")


def test_the_floor_forgets_a_quiet_moment_after_three_seconds() -> None:
    rng = np.random.default_rng(2)
    gate = QuietGate()
    for _ in range(10):
        gate.is_quiet(frame(50, rng))
    for _ in range(300):
        gate.is_quiet(frame(1000, rng))  # a fan was switched on
    assert gate.is_quiet(frame(1000, rng)), "the fan is the new floor"


@pytest.mark.models
def test_real_speech_starts_speculating_sooner_and_ends_at_the_same_place(
    tts: PiperTts,
) -> None:
    """Real Piper speech through webrtcvad: with the gate the speculative end comes
    sooner (no VAD hangover to wait out), the committed end is unchanged."""
    settings = EndpointerSettings(speculative_silence_ms=60, silence_end_ms=500,
                                  timeout_no_speech_ms=None)  # fmt: skip
    rng = np.random.default_rng(3)
    for utterance in ("What time is it?", "Set a timer for ten minutes."):
        clean = np.frombuffer(compose(tts, [0.5, utterance, 1.0]), dtype="<i2")
        noisy = clean + rng.normal(0, 60, clean.size)  # a quiet room, not digital silence
        pcm = np.clip(noisy, -32768, 32767).astype("<i2").tobytes()
        positions = {}
        for gated in (False, True):
            vad, gate, endpointer = WebRtcVad(3), QuietGate(), Endpointer(settings)
            events = []
            for start in range(0, len(pcm) - FRAME_SAMPLES * 2 + 1, FRAME_SAMPLES * 2):
                chunk = pcm[start : start + FRAME_SAMPLES * 2]
                quiet = gate.is_quiet(chunk) and gated
                events += endpointer.process(vad.is_speech(chunk), 10.0, quiet=quiet)
            positions[gated] = {e.type: e.position_sample for e in events}
        assert positions[True][E.SPECULATIVE_END] < positions[False][E.SPECULATIVE_END]
        assert positions[True][E.SPEECH_END] == positions[False][E.SPEECH_END]
