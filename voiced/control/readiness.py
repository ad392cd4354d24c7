"""Readiness and event-loop lag, sampled twice a second by one small task.

Ready means the models are loaded and audio frames advanced within the last
2 s: a dead microphone makes the daemon not ready, not "healthy and deaf".
The same timer measures how late the loop runs it: the event loop lag gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from voiced.control.metrics import Metrics

SAMPLE_S = 0.5
FRAME_WINDOW_S = 2.0


class ReadinessMonitor:
    def __init__(
        self, frames: Callable[[], int], metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.frames = frames
        self.metrics = metrics
        self.clock = clock
        self._last_frames: int | None = None
        self._advanced_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        frames = self.frames()
        if self._last_frames is not None and frames != self._last_frames:
            self._advanced_at = self.clock()
        self._last_frames = frames

    def problem(self, models_loaded: bool) -> str | None:
        """None when ready, else why not."""
        self.sample()
        if not models_loaded:
            return "models are not loaded"
        if self._advanced_at is None or self.clock() - self._advanced_at > FRAME_WINDOW_S:
            return f"no audio frames in the last {FRAME_WINDOW_S:.0f} s"
        return None

    def start(self) -> None:
        self.sample()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="voiced-readiness")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = self.clock()
            await asyncio.sleep(SAMPLE_S)
            if self.metrics is not None:
                self.metrics.loop_lag_s = max(0.0, self.clock() - before - SAMPLE_S)
            self.sample()
