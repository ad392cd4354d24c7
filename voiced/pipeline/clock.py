"""The stream clock: time is the audio position, so tests that feed audio never sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

from voiced.audio.format import samples_to_ms


class StreamClock:
    """ms since stream start: the last frame's end plus the wall time since it came.

    ``reached(ms)`` resolves once a frame takes the stream past ``ms``: deadlines
    that follow the audio (a speaker that should have drained by now) fire at the
    same audio position in a test as on a device.
    """

    def __init__(self, wall: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self.position_samples = 0
        self._position_wall_s = wall()
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now_ms(self) -> float:
        elapsed_ms = (self._wall() - self._position_wall_s) * 1000.0
        return samples_to_ms(self.position_samples) + elapsed_ms

    def advance(self, end_sample: int) -> None:
        self.position_samples = end_sample
        self._position_wall_s = self._wall()
        now = samples_to_ms(end_sample)
        while self._waiters and self._waiters[0][0] <= now:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    async def reached(self, ms: float) -> None:
        if samples_to_ms(self.position_samples) >= ms:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (ms, next(self._ids), future))
        await future
