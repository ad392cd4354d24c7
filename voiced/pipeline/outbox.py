"""Where a run's events and side effects go: out at once, or held until commit.

A speculative run writes to a held outbox. ``commit()`` publishes what it holds,
in order, once, and from then on passes everything straight through;
``discard()`` drops it all, and whatever the run still tries to send afterwards
(a ``finally`` that emits, a late worker result) goes nowhere. So outside the
device a committed speculative run cannot be told from a plain one, and a
discarded one leaves no trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

from voiced.pipeline.events import Event, EventType

_LOGGER = logging.getLogger(__name__)
MAX_HELD = 64
"""Events and effects one speculative run may hold; more is a bug, and is dropped."""


class _Mode(Enum):
    HELD = "held"
    OPEN = "open"
    CLOSED = "closed"


class Outbox:
    def __init__(
        self, publish: Callable[[Event], None], now_ms: Callable[[], float], *,
        held: bool = False,
    ) -> None:  # fmt: skip
        self._publish = publish
        self._now_ms = now_ms
        self._mode = _Mode.HELD if held else _Mode.OPEN
        self._held: list[Event | Callable[[], None]] = []

    @property
    def held(self) -> bool:
        return self._mode is _Mode.HELD

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    def emit(self, kind: EventType, **data: object) -> None:
        self._send(Event(kind, dict(data), stream_ms=self._now_ms()))

    def defer(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` now when committed, at commit when held, never when closed."""
        self._send(effect)

    def _send(self, item: Event | Callable[[], None]) -> None:
        if self._mode is _Mode.OPEN:
            self._deliver(item)
        elif self._mode is _Mode.HELD:
            if len(self._held) >= MAX_HELD:
                _LOGGER.warning("speculative run holds %d items; dropping one", MAX_HELD)
                return
            self._held.append(item)

    def _deliver(self, item: Event | Callable[[], None]) -> None:
        if isinstance(item, Event):
            self._publish(item)
        else:
            item()

    def commit(self) -> None:
        """Send everything held, in order, exactly once; later items go straight out."""
        if self._mode is not _Mode.HELD:
            return
        self._mode = _Mode.OPEN
        held, self._held = self._held, []
        for item in held:
            if self._mode is not _Mode.OPEN:
                break  # what it delivered ended the run (a listener muted): no more
            self._deliver(item)

    def close(self) -> None:
        """Drop what is held; nothing sent afterwards goes anywhere."""
        self._mode = _Mode.CLOSED
        self._held.clear()
