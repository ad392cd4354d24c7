"""One Wyoming connection's I/O: frames in through the bounded reader, events out
through a bounded queue that one writer task drains.

Nothing here blocks the caller: the voice path hands the microphone's chunks to
``offer`` (dropped when a slow peer lets the queue fill, never waited for);
replies use ``send``, which waits for room for at most WRITE_TIMEOUT_S and then
closes a peer that stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from wyoming.event import Event, async_write_event

from voiced.wyoming.framing import read_event

_LOGGER = logging.getLogger(__name__)
OUTBOX_EVENTS = 256
"""About 16 s of microphone chunks or TTS audio queued for a slow peer."""
WRITE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
"""A connection that sends nothing this long is closed (Home Assistant pings a
satellite every 2 s; a service request sends its audio at once)."""


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        address = writer.get_extra_info("peername")
        self.name = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "peer"
        self.heard_at_s = time.monotonic()
        """When the last event arrived (monotonic s)."""
        self.closed = asyncio.Event()
        self._outbox: asyncio.Queue[Event] = asyncio.Queue(OUTBOX_EVENTS)
        self._writer_task = asyncio.create_task(self._write_loop(), name=f"wyoming-out {self.name}")
        self.dropped = 0
        """Events ``offer`` dropped because the peer did not keep up."""

    async def read(self, working: Callable[[], bool] = lambda: False) -> Event | None:
        """The next event (FrameError on a malformed one); None at the end or after
        IDLE_TIMEOUT_S of silence while nothing is ``working`` on its request (a
        client waits for its answer without a word)."""
        reading = asyncio.ensure_future(read_event(self.reader))
        try:
            while True:
                done, _ = await asyncio.wait({reading}, timeout=IDLE_TIMEOUT_S)
                if done:
                    break
                if not working():
                    _LOGGER.info(
                        "wyoming: %s said nothing for %.0f s; closing", self.name, IDLE_TIMEOUT_S
                    )
                    return None
            event = reading.result()
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
        if event is not None:
            self.heard_at_s = time.monotonic()
        return event

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if there is room (the voice path's way); False if dropped."""
        if self.closed.is_set():
            return False
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def send(self, event: Event) -> None:
        """Queue ``event``, waiting for room; a peer that stopped reading is closed."""
        if self.closed.is_set():
            return
        try:
            await asyncio.wait_for(self._outbox.put(event), WRITE_TIMEOUT_S)
        except TimeoutError:
            _LOGGER.warning("wyoming: %s stopped reading; closing", self.name)
            self.close()

    async def _write_loop(self) -> None:
        try:
            while True:
                event = await self._outbox.get()
                await asyncio.wait_for(async_write_event(event, self.writer), WRITE_TIMEOUT_S)
                self._outbox.task_done()
        except (OSError, TimeoutError) as err:
            _LOGGER.info("wyoming: writing to %s failed (%s); closing", self.name, err)
            self.close()

    async def flush(self, timeout_s: float = 1.0) -> None:
        """Until what is queued has gone out (an error before closing, say)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout_s)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._writer_task.cancel()
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self.writer.close()

    async def wait_closed(self) -> None:
        self.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer_task
        with contextlib.suppress(OSError, RuntimeError):
            await self.writer.wait_closed()
