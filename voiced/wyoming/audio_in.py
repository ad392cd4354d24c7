"""A request's audio from a Wyoming peer, checked and converted as it arrives.

Any rate from 8 to 48 kHz and one or two channels are taken and converted to
pipeline PCM (16 kHz mono int16) by soxr, chunk by chunk; any other sample width
is refused with a clear error (only 16-bit is common, and guessing would be
noise). A speech-to-text request is capped at ``max_audio_s``; a wake-word
stream is not (it is consumed as it comes, for as long as the client waits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voiced.audio.resample import StreamResampler

MIN_RATE_HZ = 8000
MAX_RATE_HZ = 48000
SAMPLE_WIDTH_BYTES = 2
MAX_CHANNELS = 2


class BadRequest(Exception):
    """An event with fields out of range: answered with ``error``, the connection stays."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def audio_format(data: dict[str, Any]) -> tuple[int, int, int]:
    """(rate_hz, width_bytes, channels) of an audio-start or audio-chunk, checked."""
    rate, width, channels = data.get("rate"), data.get("width"), data.get("channels")
    for key, value in (("rate", rate), ("width", width), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest("bad-audio", f"audio {key} must be an integer, not {value!r:.40}")
    assert isinstance(rate, int) and isinstance(width, int) and isinstance(channels, int)
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise BadRequest("bad-audio", f"audio rate {rate} Hz: {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz only")
    if width != SAMPLE_WIDTH_BYTES:
        raise BadRequest("bad-audio", f"audio width {width}: only 16-bit (width 2) audio is taken")
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadRequest("bad-audio", f"audio channels {channels}: mono or stereo only")
    return rate, width, channels


class AudioIn:
    """One request's audio: ``add`` each chunk, ``finish`` at audio-stop."""

    def __init__(self, rate_hz: int, channels: int, *, max_audio_s: float | None) -> None:
        """``max_audio_s`` None: no cap (a wake-word stream, which nothing keeps)."""
        self.rate_hz, self.channels = rate_hz, channels
        self._resampler = StreamResampler(rate_hz, channels)
        self._frame_bytes = SAMPLE_WIDTH_BYTES * channels
        self._left_bytes = (
            int(max_audio_s * rate_hz) * self._frame_bytes if max_audio_s is not None else None
        )
        self._odd = b""
        self.audio_ms = 0.0
        """How much audio has arrived (ms)."""

    @classmethod
    def starting(cls, data: dict[str, Any], *, max_audio_s: float | None) -> AudioIn:
        rate, _width, channels = audio_format(data)
        return cls(rate, channels, max_audio_s=max_audio_s)

    def add(self, data: dict[str, Any], payload: bytes | None) -> bytes:
        """A chunk in (its format must be the start's); pipeline PCM out (may be empty)."""
        rate, _width, channels = audio_format(data)
        if (rate, channels) != (self.rate_hz, self.channels):
            raise BadRequest(
                "bad-audio",
                f"a {rate} Hz x{channels} chunk in a {self.rate_hz} Hz x{self.channels} stream",
            )
        raw = self._odd + (payload or b"")
        if self._left_bytes is not None and len(raw) > self._left_bytes:
            raise BadRequest("too-long", "the audio is longer than wyoming.max_audio_s")
        whole = len(raw) - len(raw) % self._frame_bytes
        self._odd = raw[whole:]
        if self._left_bytes is not None:
            self._left_bytes -= whole
        self.audio_ms += whole / self._frame_bytes * 1000.0 / rate
        if not whole:
            return b""
        block = np.frombuffer(raw[:whole], dtype="<i2").reshape(-1, self.channels)
        return self._resampler.process(block)

    def finish(self) -> bytes:
        """The resampler's tail at audio-stop."""
        return self._resampler.flush()
