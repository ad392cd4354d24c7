"""Audio sinks: where reply audio goes (WAV file, stdout, nowhere, sound card).

Two timelines:

* **aligned** (realtime runs): the daemon calls ``tick(n)`` for every input frame
  it consumes, and each tick writes exactly ``n`` output samples: queued reply
  audio, or silence. Output sample N is the same instant as input sample N, so
  response latency can be read straight off the two files.
* **sequential** (offline runs): each reply segment is written as soon as it is
  enqueued, 300 ms of silence between segments; ``tick`` does nothing.

Everything is written as 16 kHz mono int16; ``enqueue`` converts from any rate.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from voiced.audio.devices import device_of
from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES, samples_to_ms
from voiced.audio.playback import PlaybackQueue
from voiced.audio.resample import resample_pcm
from voiced.audio.soundcard import SoundcardSink
from voiced.audio.wavfile import WavWriter
from voiced.errors import AudioError

__all__ = [
    "AlignedSink",
    "AlignedWavSink",
    "AudioSink",
    "MemoryWriter",
    "NullWriter",
    "PcmWriter",
    "RawWriter",
    "SequentialSink",
    "SequentialWavSink",
    "SoundcardSink",
    "null_sink",
    "open_sink",
    "raw_stdout_sink",
]

SEGMENT_GAP_MS = 300
"""Silence between segments in sequential output."""


class AudioSink(Protocol):
    """Playback of replies."""

    def enqueue(self, pcm: bytes, rate_hz: int) -> None:
        """Queue mono int16 PCM at ``rate_hz`` to play after what is already queued."""
        ...

    def tick(self, num_samples: int) -> None:
        """The daemon consumed ``num_samples`` input samples (16 kHz); a no-op for most sinks."""
        ...

    def clear(self) -> int:
        """Barge-in: drop everything not yet played; returns the milliseconds dropped."""
        ...

    @property
    def is_playing(self) -> bool:
        """Queued audio is still waiting to be played."""
        ...

    @property
    def played_ms(self) -> float:
        """Reply audio played so far (silence not counted)."""
        ...

    async def drained(self) -> None:
        """Return once everything queued has played (at once when nothing is queued)."""
        ...

    def close(self) -> None:
        """Finish the output (idempotent); for WAV files, fixes the header."""
        ...


class PcmWriter(Protocol):
    """Somewhere 16 kHz mono int16 bytes go."""

    def write(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


class RawWriter:
    """Raw s16le to a binary stream (stdout by default); never closes the stream."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, pcm: bytes) -> None:
        try:
            self._stream.write(pcm)
            self._stream.flush()
        except (BrokenPipeError, ValueError) as err:
            raise AudioError(
                f"audio output stream closed ({err})", fix="keep the reader of stdout running"
            ) from err

    def close(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            return


class NullWriter:
    """Discards audio."""

    def write(self, pcm: bytes) -> None:
        return

    def close(self) -> None:
        return


class MemoryWriter:
    """Keeps the output in memory (the benchmark and tests read it back)."""

    def __init__(self) -> None:
        self.pcm = bytearray()

    def write(self, pcm: bytes) -> None:
        self.pcm += pcm

    def close(self) -> None:
        return


def _to_pipeline_samples(pcm: bytes, rate_hz: int) -> np.ndarray:
    return np.frombuffer(resample_pcm(pcm, rate_hz, PIPELINE_RATE_HZ), dtype="<i2")


class AlignedSink:
    """Output on the input's timeline: each ``tick(n)`` writes exactly n samples.

    Audio enqueued while frame k is processed starts at the next tick, so its
    first sample lands at the start of frame k + 1. ``clear()`` takes effect at
    the next tick. Audio still queued at ``close()`` is not written.
    """

    def __init__(self, writer: PcmWriter) -> None:
        self._writer = writer
        self._queue = PlaybackQueue()
        self.position_samples = 0
        """Samples written so far (= input samples ticked)."""
        self.first_audio_sample: list[int] = []
        """Output position of the first sample of each segment (enqueue) that played."""
        self.onset_samples: list[int] = []
        """Output positions where playback started after silence (reply onsets)."""
        self._audio_end = -1
        self._played_samples = 0
        self._dropped_samples = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.taps: list[Callable[[int, np.ndarray], None]] = []
        """Called with (position_sample, samples) for every block played, silence too:
        the echo canceller's far-end reference and the simulated room listen here."""

    def enqueue(self, pcm: bytes, rate_hz: int) -> None:
        samples = _to_pipeline_samples(pcm, rate_hz)
        if samples.size and not self._closed:
            self._queue.append(samples)
            self._idle.clear()

    def tick(self, num_samples: int) -> None:
        if self._closed or num_samples <= 0:
            return
        data, starts = self._queue.read(num_samples)
        for offset in starts:
            position = self.position_samples + offset
            self.first_audio_sample.append(position)
            # A tick's audio is contiguous from its start, so only a segment at
            # offset 0 can follow silence: one later in the tick continues the last.
            if offset == 0 and position != self._audio_end:
                self.onset_samples.append(position)
        out = np.zeros(num_samples, dtype="<i2")
        out[: data.size] = data
        if data.size:
            self._audio_end = self.position_samples + int(data.size)
        self._played_samples += int(data.size)
        for tap in self.taps:
            tap(self.position_samples, out)
        self.position_samples += num_samples
        if not self._queue.pending_samples:
            self._idle.set()
        self._writer.write(out.tobytes())

    def clear(self) -> int:
        dropped = self._queue.clear()
        self._dropped_samples += dropped
        self._idle.set()
        return round(samples_to_ms(dropped))

    @property
    def is_playing(self) -> bool:
        return self._queue.pending_samples > 0

    @property
    def pending_ms(self) -> float:
        return samples_to_ms(self._queue.pending_samples)

    @property
    def played_ms(self) -> float:
        return samples_to_ms(self._played_samples)

    @property
    def dropped_ms(self) -> float:
        return samples_to_ms(self._dropped_samples)

    async def drained(self) -> None:
        """Resolves once ticks have played everything out, or it was cleared, or closed."""
        await self._idle.wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._idle.set()
        self._writer.close()


class SequentialSink:
    """Offline output: segments written back to back as they arrive, 300 ms apart."""

    def __init__(self, writer: PcmWriter, *, gap_ms: int = SEGMENT_GAP_MS) -> None:
        self._writer = writer
        self._gap = bytes(PIPELINE_RATE_HZ * gap_ms // 1000 * SAMPLE_WIDTH_BYTES)
        self.position_samples = 0
        self.first_audio_sample: list[int] = []
        """Output position of the first sample of each segment."""
        self._played_samples = 0
        self._closed = False

    def enqueue(self, pcm: bytes, rate_hz: int) -> None:
        if self._closed:
            return
        samples = _to_pipeline_samples(pcm, rate_hz)
        if samples.size == 0:
            return
        if self.first_audio_sample:
            self._write(self._gap)
        self.first_audio_sample.append(self.position_samples)
        self._write(samples.tobytes())
        self._played_samples += int(samples.size)

    @property
    def onset_samples(self) -> list[int]:
        return self.first_audio_sample

    def _write(self, pcm: bytes) -> None:
        self._writer.write(pcm)
        self.position_samples += len(pcm) // SAMPLE_WIDTH_BYTES

    def tick(self, num_samples: int) -> None:
        """Nothing: offline output has no timeline."""

    def clear(self) -> int:
        return 0

    @property
    def is_playing(self) -> bool:
        return False

    @property
    def played_ms(self) -> float:
        return samples_to_ms(self._played_samples)

    async def drained(self) -> None:
        return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()


class AlignedWavSink(AlignedSink):
    """:class:`AlignedSink` to a 16 kHz mono int16 WAV file."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(WavWriter(Path(path)))


class SequentialWavSink(SequentialSink):
    """:class:`SequentialSink` to a 16 kHz mono int16 WAV file."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(WavWriter(Path(path)))


def raw_stdout_sink(aligned: bool, stream: BinaryIO | None = None) -> AlignedSink | SequentialSink:
    """Raw s16le 16 kHz mono to stdout (or ``stream``), aligned or sequential."""
    writer = RawWriter(stream)
    return AlignedSink(writer) if aligned else SequentialSink(writer)


def null_sink(aligned: bool) -> AlignedSink | SequentialSink:
    """Discards audio; when aligned, playback still takes time as ticks pass."""
    return AlignedSink(NullWriter()) if aligned else SequentialSink(NullWriter())


def open_sink(spec: str | None, realtime: bool) -> AudioSink:
    """The sink a spec names: ``*.wav``, ``-`` (stdout), ``null``, or a sound card as
    for open_source; None for the default speaker. Realtime runs get the aligned timeline.
    """
    if spec is None:
        return SoundcardSink(None)
    text = spec.strip()
    if text == "-":
        return raw_stdout_sink(aligned=realtime)
    if text.lower() == "null":
        return null_sink(aligned=realtime)
    if text.lower().endswith(".wav"):
        return AlignedWavSink(text) if realtime else SequentialWavSink(text)
    return SoundcardSink(device_of(text))
