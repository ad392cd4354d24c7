"""Sound-card source and sink (PortAudio through ``sounddevice``, imported lazily).

Callbacks run on PortAudio's thread: they copy, hand over and return; they
never block on the event loop and never raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import numpy as np

from voiced.audio.devices import (
    PORTAUDIO_LOCK,
    DeviceInfo,
    find_device,
    load_sounddevice,
    stream_closed,
    stream_started,
)
from voiced.audio.format import PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.framing import FrameSplitter
from voiced.audio.playback import PlaybackQueue
from voiced.audio.resample import StreamResampler, resample_pcm
from voiced.audio.stream_clock import StreamClock
from voiced.errors import AudioError

_BUSY_FIX = "check the device is plugged in and not held by another program (fuser -v /dev/snd/*)"


class SoundcardSource:
    """Microphone frames: device default rate -> 16 kHz mono 10 ms frames.

    The PortAudio callback posts each block to a bounded asyncio queue with
    ``call_soon_threadsafe``; a full queue drops the block and counts an xrun,
    as does a PortAudio input overflow. A microphone that delivers nothing for
    ``stall_timeout_s`` raises AudioError so the caller's reconnect loop reopens it.
    Each frame carries when it was captured (``captured_at_s``), from PortAudio's
    timing, for the echo canceller.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        block_ms: int = 20,
        queue_blocks: int = 50,
        stall_timeout_s: float = 2.0,
        sample_rate_hz: int | None = None,
    ) -> None:
        self.device = device
        self.sample_rate_hz = sample_rate_hz
        """The rate to open at (a profile's capture rate); None, or refused: the device's."""
        self.opened_rate_hz = 0
        self.block_ms = block_ms
        self.stall_timeout_s = stall_timeout_s
        self._queue_blocks = queue_blocks
        self._queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(maxsize=queue_blocks)
        self._queue_overflows = 0
        self._input_overflows = 0
        self._closed = False
        self._stream: Any = None

    @property
    def xruns(self) -> int:
        """Blocks lost: PortAudio input overflows plus blocks dropped on a full queue."""
        return self._queue_overflows + self._input_overflows

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        loop = asyncio.get_running_loop()
        self._closed = False
        self._queue = asyncio.Queue(maxsize=self._queue_blocks)
        info = await asyncio.to_thread(find_device, self.device, "input")
        channels, rate_hz = await asyncio.to_thread(self._open_at_a_rate, info, loop)
        resampler = StreamResampler(rate_hz, channels)
        splitter = FrameSplitter()
        clock = StreamClock(rate_hz)
        device_samples = 0  # at the device's rate, received before this block
        lost_before = self.xruns
        try:
            while not self._closed:
                try:
                    block, adc_time_s = await asyncio.wait_for(self._queue.get(),
                                                               self.stall_timeout_s)  # fmt: skip
                except TimeoutError:
                    if self._closed:
                        break
                    raise AudioError(
                        f"microphone {info.name!r} delivered no audio for "
                        f"{self.stall_timeout_s:g} s",
                        fix=_BUSY_FIX,
                    ) from None
                if self._closed:
                    break
                lost = self.xruns
                if lost != lost_before:  # blocks were lost: the count no longer holds
                    clock.reset()
                    lost_before = lost
                start_s = clock.place(adc_time_s, len(block))
                # The time of the device's sample 0 by this block's placement: frame
                # times follow from their sample counts (resampled 16 kHz samples
                # correspond to device samples in proportion; soxr's few samples of
                # delay are within what the canceller's reference lead allows for).
                zero_s = None if start_s is None else start_s - device_samples / rate_hz
                device_samples += len(block)
                for frame in splitter.push(resampler.process(block)):
                    if zero_s is not None:
                        at_s = zero_s + frame.start_sample / PIPELINE_RATE_HZ
                        frame = dataclasses.replace(frame, captured_at_s=at_s)
                    yield frame
        finally:
            self.close()

    def _open_at_a_rate(self, info: DeviceInfo, loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
        """(channels, rate): the configured rate first, else the device's default."""
        rates = list(dict.fromkeys([r for r in (self.sample_rate_hz,) if r]
                                   + [info.default_samplerate_hz]))  # fmt: skip
        for rate_hz in rates:
            try:
                channels = self._open(info, loop, rate_hz)
            except AudioError:
                if rate_hz == rates[-1]:
                    raise
                continue
            self.opened_rate_hz = rate_hz
            return channels, rate_hz
        raise AssertionError("unreachable: rates is never empty")

    def _open(self, info: DeviceInfo, loop: asyncio.AbstractEventLoop, rate_hz: int) -> int:
        """Open and start the input stream at ``rate_hz``; returns its channel count."""
        sd = load_sounddevice()

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self._input_overflows += 1
            block = (indata.copy(), _reported_s(time_info, "inputBufferAdcTime"))
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop has closed
                loop.call_soon_threadsafe(self._on_block, block)

        self._stream, channels = _start_first(
            sd, "microphone", info, info.max_input_channels,
            lambda channels: sd.InputStream(
                device=info.index, samplerate=rate_hz, channels=channels,
                dtype="float32", blocksize=rate_hz * self.block_ms // 1000,
                callback=callback,
            ),
        )  # fmt: skip
        return channels

    def _on_block(self, block: tuple[np.ndarray, float]) -> None:
        try:
            self._queue.put_nowait(block)
        except asyncio.QueueFull:
            self._queue_overflows += 1

    def close(self) -> None:
        """Stop the stream and end ``frames()`` (call from the event loop's thread)."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream)
        with contextlib.suppress(asyncio.QueueFull):  # wakes a waiting frames()
            self._queue.put_nowait((np.zeros((0, 1), dtype=np.float32), 0.0))


class SoundcardSink:
    """Reply playback on a sound card, at ``rate_hz`` or the device's default rate.

    The PortAudio callback pulls from a thread-safe :class:`PlaybackQueue`;
    ``clear()`` empties it, so barge-in takes effect at the next callback.
    ``tick()`` does nothing: the device clock paces playback. Each ``played_taps``
    callable is given, on PortAudio's thread, what the speaker played and when
    (``(dac_time_s, samples, rate_hz)``, the samples at the device's rate): the
    echo canceller's far end. A tap must only copy and return.
    """

    def __init__(
        self, device: str | int | None = None, *, rate_hz: int | None = None, block_ms: int = 20
    ) -> None:
        info = find_device(device, "output")
        self._device, self._block_ms = device, block_ms
        self.device_name = info.name
        self.rate_hz = rate_hz or info.default_samplerate_hz or PIPELINE_RATE_HZ
        self._queue = PlaybackQueue()
        self._played_samples = 0
        self._dropped_samples = 0
        self.underruns = 0
        """PortAudio output underflows."""
        self.played_taps: list[Callable[[float, np.ndarray, int], None]] = []
        self._clock = StreamClock(self.rate_hz)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._stream = self._open(info, block_ms)

    def _open(self, info: DeviceInfo, block_ms: int) -> Any:
        sd = load_sounddevice()
        stream, _ = _start_first(
            sd, "speaker", info, info.max_output_channels,
            lambda channels: sd.OutputStream(
                device=info.index, samplerate=self.rate_hz, channels=channels, dtype="int16",
                blocksize=self.rate_hz * block_ms // 1000, callback=self._callback,
            ),
        )  # fmt: skip
        return stream

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow:
            self.underruns += 1
        data, _ = self._queue.read(frames)
        outdata[: data.size] = data[:, np.newaxis]
        outdata[data.size :] = 0
        self._played_samples += int(data.size)
        if status.output_underflow:
            self._clock.reset()  # the converter ran dry: the count no longer holds
        start_s = self._clock.place(_reported_s(time_info, "outputBufferDacTime"), frames)
        if data.size and start_s is not None:
            # The whole block, the silence after a reply's last sample too: the next
            # block follows on from it exactly, and the reply's tail is in the far end.
            played = outdata[:, 0]
            for tap in self.played_taps:
                tap(start_s, played, self.rate_hz)
        if data.size and not self._queue.pending_samples:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    def enqueue(self, pcm: bytes, rate_hz: int) -> None:
        converted = resample_pcm(pcm, rate_hz, self.rate_hz)
        self._queue.append(np.frombuffer(converted, dtype="<i2"))

    def tick(self, num_samples: int) -> None:
        """Nothing to do: the sound card's clock paces playback."""

    def clear(self) -> int:
        dropped = self._queue.clear()
        self._dropped_samples += dropped
        self._wake_waiters()
        return round(dropped * 1000 / self.rate_hz)

    @property
    def is_playing(self) -> bool:
        return self._queue.pending_samples > 0

    @property
    def played_ms(self) -> float:
        return self._played_samples * 1000.0 / self.rate_hz

    @property
    def dropped_ms(self) -> float:
        return self._dropped_samples * 1000.0 / self.rate_hz

    async def drained(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue.pending_samples and self._stream is not None:
            future: asyncio.Future[None] = loop.create_future()
            with self._waiters_lock:
                self._waiters.append((loop, future))
            if not self._queue.pending_samples:
                break
            await future

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream)
        self._wake_waiters()

    def reopen(self) -> None:
        """Close the stream and open the device again (blocking: call off the loop).
        What was queued is dropped; raises AudioError while the device is gone."""
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream)
        self._dropped_samples += self._queue.clear()
        self._wake_waiters()
        self._clock = StreamClock(self.rate_hz)
        info = find_device(self._device, "output")
        self.device_name = info.name
        self._stream = self._open(info, self._block_ms)


def _start_first(
    sd: Any, what: str, info: DeviceInfo, max_channels: int, make: Callable[[int], Any]
) -> tuple[Any, int]:
    """Open and start a stream, mono first, else stereo: (stream, channels)."""
    last_error: Exception | None = None
    for channels in _channel_choices(max_channels):
        stream = None
        try:
            with PORTAUDIO_LOCK:
                stream = make(channels)
                stream.start()
                stream_started()
        except (sd.PortAudioError, ValueError) as err:
            last_error = err
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
            continue
        return stream, channels
    raise AudioError(f"cannot open {what} {info.name!r}: {last_error}", fix=_BUSY_FIX) from (
        last_error
    )


def _channel_choices(max_channels: int) -> list[int]:
    """Mono first; some ALSA hw devices only open in stereo."""
    return list(dict.fromkeys((1, min(2, max(1, max_channels)))))


def _reported_s(time_info: Any, field: str) -> float:
    """A time PortAudio gave the callback; 0 (none) where it gave none."""
    value = getattr(time_info, field, 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_stream(stream: Any) -> None:
    with contextlib.suppress(Exception):  # a vanished device must not stop shutdown
        stream.stop()
        stream.close()
    stream_closed()
