"""Cutting pipeline PCM into 10 ms frames, and pacing them at 1x without drift."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES, AudioFrame

FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH_BYTES

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` unless a test injects a fake)."""
Sleep = Callable[[float], Awaitable[None]]
"""Sleeps a number of seconds (``asyncio.sleep`` unless a test injects a fake)."""


class FrameSplitter:
    """Pipeline PCM of any length in, whole 10 ms :class:`AudioFrame` s out.

    ``start_sample`` counts from 0. A trailing odd byte is dropped; at
    :meth:`finish` a partial last frame is padded with silence to 10 ms, since
    webrtcvad and the wake-word frontend take only whole frames.
    """

    def __init__(self, start_sample: int = 0) -> None:
        self._buffer = bytearray()
        self.next_sample = start_sample
        """``start_sample`` of the next frame to come out."""

    def push(self, pcm: bytes) -> list[AudioFrame]:
        self._buffer += pcm
        whole = len(self._buffer) - len(self._buffer) % FRAME_BYTES
        frames = [
            self._emit(bytes(self._buffer[i : i + FRAME_BYTES]))
            for i in range(0, whole, FRAME_BYTES)
        ]
        del self._buffer[:whole]
        return frames

    def finish(self) -> list[AudioFrame]:
        usable = len(self._buffer) - len(self._buffer) % SAMPLE_WIDTH_BYTES
        tail = bytes(self._buffer[:usable])
        self._buffer.clear()
        if not tail:
            return []
        return [self._emit(tail + bytes(FRAME_BYTES - len(tail)))]

    def _emit(self, pcm: bytes) -> AudioFrame:
        frame = AudioFrame(pcm=pcm, start_sample=self.next_sample)
        self.next_sample += FRAME_SAMPLES
        return frame


class FramePacer:
    """Releases the frame starting at sample ``s`` at ``t0 + s / 16 kHz``.

    Deadlines come from the first call's clock reading, not from sleeping 10 ms
    per frame, so the schedule never drifts; a late consumer gets the frames it
    missed without sleeping until it has caught up.
    """

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None

    def deadline_s(self, start_sample: int) -> float:
        if self._t0 is None:
            self._t0 = self._clock()
        return self._t0 + start_sample / PIPELINE_RATE_HZ

    async def wait(self, start_sample: int) -> None:
        deadline = self.deadline_s(start_sample)
        delay = deadline - self._clock()
        if delay > 0:
            await self._sleep(delay)
