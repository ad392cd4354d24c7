"""Conversion between edge audio (any rate, any channel count) and pipeline PCM.

Sources call :func:`to_pipeline_pcm` (whole buffers) or :class:`StreamResampler`
(sound-card blocks); sinks call :func:`from_pipeline_pcm` / :func:`resample_pcm`
when a device or voice runs at another rate. soxr does the resampling.
"""

from __future__ import annotations

import numpy as np
import soxr  # type: ignore[import-untyped]

from voiced.audio.format import PIPELINE_RATE_HZ, float32_to_pcm

_INT16_SCALE = 32768.0


def to_float32_mono(samples: np.ndarray) -> np.ndarray:
    """float32/float64/int16 samples of shape (n,) or (n, channels) to float32 mono.

    Channels are downmixed by their mean; int16 is scaled to [-1, 1).
    """
    if samples.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D or 2-D (frames, channels), got {samples.ndim}-D")
    if samples.dtype == np.int16:
        data = samples.astype(np.float32) / _INT16_SCALE
    elif samples.dtype in (np.float32, np.float64):
        data = samples.astype(np.float32, copy=False)
    else:
        raise ValueError(f"samples must be float32, float64 or int16, got {samples.dtype}")
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(data, dtype=np.float32)


def to_pipeline_pcm(samples: np.ndarray, rate_hz: int) -> bytes:
    """Whole buffer at ``rate_hz`` to pipeline PCM (16 kHz mono int16 bytes)."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    if (
        samples.dtype == np.int16
        and rate_hz == PIPELINE_RATE_HZ
        and (samples.ndim == 1 or samples.shape[1] == 1)
    ):
        return samples.astype("<i2", copy=False).tobytes()
    mono = to_float32_mono(samples)
    if rate_hz != PIPELINE_RATE_HZ and mono.size:
        mono = soxr.resample(mono, rate_hz, PIPELINE_RATE_HZ, quality="HQ")
    return float32_to_pcm(mono)


def resample_pcm(pcm: bytes, from_rate_hz: int, to_rate_hz: int) -> bytes:
    """Mono int16 PCM bytes from one rate to another (returned unchanged when equal)."""
    if from_rate_hz <= 0 or to_rate_hz <= 0:
        raise ValueError(f"rates must be positive, got {from_rate_hz} -> {to_rate_hz}")
    usable = len(pcm) - len(pcm) % 2
    if from_rate_hz == to_rate_hz or usable == 0:
        return bytes(pcm[:usable])
    samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32) / _INT16_SCALE
    out = soxr.resample(samples, from_rate_hz, to_rate_hz, quality="HQ")
    return float32_to_pcm(out)


def from_pipeline_pcm(pcm: bytes, rate_hz: int) -> bytes:
    """Pipeline PCM (16 kHz mono int16) to mono int16 at ``rate_hz`` for a sink."""
    return resample_pcm(pcm, PIPELINE_RATE_HZ, rate_hz)


class StreamResampler:
    """Streaming conversion of float32 blocks (n, channels) to pipeline PCM.

    Keeps soxr's filter state between blocks, so block edges make no clicks.
    Not thread-safe: feed it from one task.
    """

    def __init__(self, in_rate_hz: int, channels: int) -> None:
        if in_rate_hz <= 0:
            raise ValueError(f"in_rate_hz must be positive, got {in_rate_hz}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.in_rate_hz = in_rate_hz
        self.channels = channels
        self._stream = (
            None
            if in_rate_hz == PIPELINE_RATE_HZ
            else soxr.ResampleStream(in_rate_hz, PIPELINE_RATE_HZ, 1, dtype="float32")
        )

    def process(self, block: np.ndarray, *, last: bool = False) -> bytes:
        """One block (n,) or (n, channels) -> pipeline PCM bytes (may be empty)."""
        mono = to_float32_mono(block)
        if self._stream is not None:
            mono = self._stream.resample_chunk(mono, last=last)
        return float32_to_pcm(mono)

    def flush(self) -> bytes:
        """The resampler's remaining output at the end of a stream."""
        return self.process(np.zeros(0, dtype=np.float32), last=True)
