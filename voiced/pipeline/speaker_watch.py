"""The speaker, supervised like the microphone.

A reply that does not play out in time (voiced.pipeline.run.TurnRun.drain) reports
the speaker lost: a ``speaker-lost`` event, then, for a sink that can reopen its
device, tries to reopen it with backoff (1 s doubling to 30 s, on the stream
clock) until it works: ``speaker-restored``. A later reply that plays out also
counts as restored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from voiced.errors import AudioError
from voiced.pipeline.clock import StreamClock
from voiced.pipeline.events import EventType
from voiced.ratelimit import RateLimitedLog

_LOGGER = logging.getLogger(__name__)
FIRST_BACKOFF_MS = 1000.0
MAX_BACKOFF_MS = 30_000.0


@runtime_checkable
class Reopenable(Protocol):
    def reopen(self) -> None:
        """Open the device again (blocking); raises AudioError or OSError while gone."""
        ...


class SpeakerWatch:
    def __init__(
        self, sink: object, clock: StreamClock, executor: concurrent.futures.Executor,
        emit: Callable[[EventType], None], hold: Callable[[asyncio.Task[None]], None],
        errors_log: RateLimitedLog,
    ) -> None:  # fmt: skip
        self._sink = sink
        self._clock = clock
        self._executor = executor
        self._emit = emit
        self._hold = hold
        self._errors_log = errors_log
        self.ok = True
        self.reopens = 0
        self._task: asyncio.Task[None] | None = None

    def report(self, ok: bool) -> None:
        """After each drain: did the reply play out?"""
        if ok and not self.ok:
            self._restored()
        elif not ok and self.ok:
            self.ok = False
            self._emit(EventType.SPEAKER_LOST)
            if isinstance(self._sink, Reopenable) and self._task is None:
                self._task = asyncio.create_task(self._reopen(self._sink))
                self._hold(self._task)

    def _restored(self) -> None:
        self.ok = True
        self._emit(EventType.SPEAKER_RESTORED)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _reopen(self, sink: Reopenable) -> None:
        loop = asyncio.get_running_loop()
        backoff_ms = FIRST_BACKOFF_MS
        while not self.ok:
            await self._clock.reached(self._clock.now_ms() + backoff_ms)
            try:
                await loop.run_in_executor(self._executor, sink.reopen)
            except (AudioError, OSError) as err:
                self._errors_log.log(logging.WARNING, "speaker_lost",
                                     "speaker still gone: %s", err)  # fmt: skip
                backoff_ms = min(backoff_ms * 2, MAX_BACKOFF_MS)
                continue
            self.reopens += 1
            _LOGGER.info("speaker reopened")
            self._task = None
            if not self.ok:
                self._restored()
            return
