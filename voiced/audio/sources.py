"""Audio sources: where pipeline frames come from (file, stdin, sound card, silence).

Every source yields 10 ms :class:`AudioFrame` s of 16 kHz mono int16 whose
``start_sample`` counts from 0. ``open_source`` turns a command-line spec into
a source; nothing is opened until ``frames()`` is iterated.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from voiced.audio.devices import (
    DeviceInfo,
    device_of,
    format_device_table,
    list_devices,
)
from voiced.audio.format import FRAME_SAMPLES, AudioFrame
from voiced.audio.framing import FRAME_BYTES, Clock, FramePacer, FrameSplitter, Sleep
from voiced.audio.soundcard import SoundcardSource
from voiced.audio.wavfile import MAX_DURATION_S, read_wav_as_pipeline_pcm

__all__ = [
    "AudioSource",
    "DeviceInfo",
    "RawStdinSource",
    "SilenceSource",
    "SoundcardSource",
    "WavFileSource",
    "format_device_table",
    "list_devices",
    "open_source",
]

_YIELD_EVERY_FRAMES = 10
"""Non-realtime sources hand the event loop a turn every this many frames."""
_STDIN_READ_BYTES = 4096


class AudioSource(Protocol):
    """A stream of pipeline frames."""

    def frames(self) -> AsyncGenerator[AudioFrame, None]:
        """10 ms frames, ``start_sample`` from 0; ends at end of input. Raises AudioError.

        Close it with ``aclose()`` (or ``contextlib.aclosing``) when stopping early,
        so the device is released at once rather than when garbage-collected.
        """
        ...

    def close(self) -> None:
        """Stop delivering frames and release the device or file (idempotent)."""
        ...


class WavFileSource:
    """A WAV file of any PCM/float encoding, rate and channel count, as pipeline frames.

    The file is decoded in a worker thread when ``frames()`` starts (or at
    :meth:`open`). With ``realtime`` frames come at 1x on a drift-free schedule
    (frame n at t0 + n * 10 ms); without it, as fast as the consumer takes them.
    """

    def __init__(
        self,
        path: Path | str,
        realtime: bool,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_duration_s: float = MAX_DURATION_S,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.max_duration_s = max_duration_s
        self._clock = clock
        self._sleep = sleep
        self._pcm: bytes | None = None
        self._closed = False

    async def open(self) -> None:
        """Decode the file now (AudioError if it cannot be read); frames() does it otherwise."""
        if self._pcm is None:
            self._pcm = await asyncio.to_thread(
                read_wav_as_pipeline_pcm, self.path, max_duration_s=self.max_duration_s
            )

    @property
    def num_samples(self) -> int:
        """Pipeline samples in the decoded file (0 before open)."""
        return len(self._pcm or b"") // 2

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        await self.open()
        assert self._pcm is not None
        pacer = FramePacer(self._clock, self._sleep)
        for frame in _split(self._pcm):
            if self._closed:
                return
            await _pace(pacer, frame, self.realtime)
            yield frame

    def close(self) -> None:
        self._closed = True


class RawStdinSource:
    """Raw s16le 16 kHz mono PCM from stdin (or any binary stream), as pipeline frames.

    Pipes and terminals are read through the event loop (``connect_read_pipe``);
    regular files in a worker thread. A trailing odd byte is dropped.
    """

    def __init__(
        self,
        realtime: bool,
        *,
        stream: BinaryIO | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.realtime = realtime
        self._stream = stream
        self._clock = clock
        self._sleep = sleep
        self._closed = False

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        splitter = FrameSplitter()
        pacer = FramePacer(self._clock, self._sleep)
        async for chunk in _read_chunks(stream):
            for frame in splitter.push(chunk):
                if self._closed:
                    return
                await _pace(pacer, frame, self.realtime)
                yield frame
        for frame in splitter.finish():
            await _pace(pacer, frame, self.realtime)
            yield frame

    def close(self) -> None:
        self._closed = True


class SilenceSource:
    """Endless digital silence at 1x: a microphone that hears nothing (spec ``null``).

    Frames come in blocks of ``BLOCK_FRAMES``, as a sound card delivers them, so
    the process wakes as often as it would with a real microphone.
    """

    BLOCK_FRAMES = 2
    """20 ms, the sound-card source's block."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._pacer = FramePacer(clock, sleep)
        self._closed = False

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        splitter = FrameSplitter()
        silence = bytes(FRAME_BYTES)
        while not self._closed:
            (frame,) = splitter.push(silence)
            if frame.start_sample % (self.BLOCK_FRAMES * FRAME_SAMPLES) == 0:
                await self._pacer.wait(frame.start_sample)
            yield frame

    def close(self) -> None:
        self._closed = True


async def _pace(pacer: FramePacer, frame: AudioFrame, realtime: bool) -> None:
    if realtime:
        await pacer.wait(frame.start_sample)
    elif frame.start_sample % (_YIELD_EVERY_FRAMES * FRAME_SAMPLES) == 0:
        await asyncio.sleep(0)


def _split(pcm: bytes) -> Iterator[AudioFrame]:
    """Frames of a whole buffer, made lazily (an hour is 360,000 frames)."""
    splitter = FrameSplitter()
    step = FRAME_BYTES * 100
    for offset in range(0, len(pcm), step):
        yield from splitter.push(pcm[offset : offset + step])
    yield from splitter.finish()


async def _read_chunks(stream: BinaryIO) -> AsyncGenerator[bytes, None]:
    """Chunks of a binary stream until EOF, without blocking the event loop."""
    if _is_pipe_like(stream):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )
        try:
            while chunk := await reader.read(_STDIN_READ_BYTES):
                yield chunk
        finally:
            transport.close()
        return
    read = getattr(stream, "read1", stream.read)
    while chunk := await asyncio.to_thread(read, _STDIN_READ_BYTES):
        yield chunk


def _is_pipe_like(stream: BinaryIO) -> bool:
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        mode = os.fstat(stream.fileno()).st_mode
        return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
    return False


def open_source(
    spec: str | None, realtime: bool, *, capture_rate_hz: int | None = None
) -> AudioSource:
    """The source a spec names: ``*.wav``, ``-`` (stdin), ``null``, or a sound card
    (see devices.device_of: ``default``, ``hw:CARD=USB,DEV=0``, a PortAudio name or
    index, ``device:NAME_OR_INDEX``); None for the default microphone, opened at
    ``capture_rate_hz`` when it takes it. Opens nothing yet; a bad spec is an AudioError.
    """
    if spec is None:
        return SoundcardSource(None, sample_rate_hz=capture_rate_hz)
    text = spec.strip()
    if text == "-":
        return RawStdinSource(realtime)
    if text.lower() == "null":
        return SilenceSource()
    if text.lower().endswith(".wav"):
        return WavFileSource(Path(text), realtime)
    return SoundcardSource(device_of(text), sample_rate_hz=capture_rate_hz)


_SPEC_FIX = (
    "use a .wav path, '-' for raw s16le 16 kHz mono on stdin/stdout, 'null', "
    "'device:NAME_OR_INDEX' (see `voiced devices`), or leave it unset for the default {what}"
)
