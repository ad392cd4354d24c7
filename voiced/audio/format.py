"""The one audio format inside the pipeline: 16 kHz, mono, signed 16-bit PCM.

Everything is converted to this at the edges (sources) and from it at the edges
(sinks); stages never resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIPELINE_RATE_HZ = 16_000
SAMPLE_WIDTH_BYTES = 2
FRAME_MS = 10
"""Sources deliver 10 ms frames: webrtcvad and the wake-word frontend both take them."""
FRAME_SAMPLES = PIPELINE_RATE_HZ * FRAME_MS // 1000


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A short run of pipeline audio (16 kHz mono int16)."""

    pcm: bytes
    """Little-endian signed 16-bit samples."""
    start_sample: int
    """Index of the first sample, counted from the start of the stream."""
    captured_at_s: float | None = None
    """When the first sample reached the microphone's converter, in the sound card's
    clock (PortAudio stream time, seconds); None where there is no such clock (a
    file, stdin). The echo canceller matches it against when the speaker played."""

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH_BYTES

    @property
    def start_ms(self) -> float:
        return self.start_sample * 1000.0 / PIPELINE_RATE_HZ

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.num_samples

    @property
    def duration_ms(self) -> float:
        return self.num_samples * 1000.0 / PIPELINE_RATE_HZ


def samples_to_ms(num_samples: int, rate_hz: int = PIPELINE_RATE_HZ) -> float:
    return num_samples * 1000.0 / rate_hz


def ms_to_samples(ms: float, rate_hz: int = PIPELINE_RATE_HZ) -> int:
    return round(ms * rate_hz / 1000.0)


def pcm_to_float32(pcm: bytes) -> np.ndarray:
    """int16 PCM bytes to float32 in [-1, 1), the input faster-whisper takes."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float32_to_pcm(samples: np.ndarray) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0 - 1.0 / 32768.0)
    return bytes((clipped * 32768.0).astype("<i2").tobytes())
