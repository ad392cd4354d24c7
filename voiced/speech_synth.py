"""Spoken test input made with the installed voice: for the demo, tests and the benchmark."""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path

from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiced.audio.resample import resample_pcm
from voiced.engines.tts import PiperTts

Part = str | float
"""Text to speak, or seconds of silence."""


def speak_16k(tts: PiperTts, text: str) -> bytes:
    """``text`` spoken by the voice, as pipeline PCM (16 kHz mono int16)."""
    pcm = tts.synthesize_all(text, repeatable=True)
    return resample_pcm(pcm, tts.sample_rate_hz, PIPELINE_RATE_HZ)


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * PIPELINE_RATE_HZ) * SAMPLE_WIDTH_BYTES)


def compose(tts: PiperTts, parts: Sequence[Part]) -> bytes:
    return b"".join(silence(p) if isinstance(p, float | int) else speak_16k(tts, p) for p in parts)


def write_wav(path: Path, pcm: bytes, rate_hz: int = PIPELINE_RATE_HZ) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH_BYTES)
        out.setframerate(rate_hz)
        out.writeframes(pcm)
