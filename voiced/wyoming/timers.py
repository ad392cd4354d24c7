"""Home Assistant's timers on a satellite, kept in voiced's own timer book.

A timer Home Assistant starts (timer-started) is put in voiced's book under the
name ``ha-<id>``, so "how long is left" and the HTTP API see it and voiced rings
it with its own alert. It rings once: whichever comes first, voiced's clock or
Home Assistant's timer-finished, rings it and removes it. A paused timer
(timer-updated, is_active false) leaves the book until it is resumed.
"""

from __future__ import annotations

import logging
from typing import Any

from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventType
from voiced.wyoming.audio_in import BadRequest

_LOGGER = logging.getLogger(__name__)
MAX_TIMER_S = 7 * 86_400
MAX_ID_CHARS = 64
MAX_NAME_CHARS = 100
MAX_PAUSED = 32


def _field(data: dict[str, Any], key: str, kind: type, cap: int, *, required: bool) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadRequest("bad-event", f"timer {key} must be a {kind.__name__}")
    if (isinstance(value, str) and not 0 < len(value) <= cap) or (
        isinstance(value, int) and not 0 <= value <= cap
    ):
        raise BadRequest("bad-event", f"timer {key} is out of range")
    return value


def label_for(name: str | None, data: dict[str, Any]) -> str:
    """What the alert calls it: its name, else how long it was set for ("5 minute")."""
    if name:
        return name.strip()[:MAX_NAME_CHARS]
    parts = []
    for key, unit in (
        ("start_hours", "hour"),
        ("start_minutes", "minute"),
        ("start_seconds", "second"),
    ):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10_000:
            parts.append(f"{value} {unit}")
    return " ".join(parts) or "Home Assistant"


class RemoteTimers:
    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.labels: dict[str, str] = {}
        """Home Assistant's id -> the label, for every timer it told us of."""
        self.paused: dict[str, str] = {}

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        timer_id = _field(data, "id", str, MAX_ID_CHARS, required=True)
        name = f"ha-{timer_id}"
        book = self.assistant.timers
        now_ms = self.assistant.now_ms()
        if kind == "timer-started":
            seconds = _field(data, "total_seconds", int, MAX_TIMER_S, required=True)
            label = label_for(_field(data, "name", str, MAX_NAME_CHARS, required=False), data)
            self.labels[timer_id] = label
            if not book.add(now_ms + seconds * 1000.0, label, name, now_ms=now_ms):
                _LOGGER.warning("Home Assistant's timer %s refused: the book is full", timer_id)
        elif kind == "timer-updated":
            seconds = _field(data, "total_seconds", int, MAX_TIMER_S, required=True)
            active = data.get("is_active")
            label = self.labels.get(timer_id, "Home Assistant")
            book.cancel(name, now_ms=now_ms)
            if active is False:
                if len(self.paused) < MAX_PAUSED:
                    self.paused[timer_id] = label
            else:
                self.paused.pop(timer_id, None)
                book.add(now_ms + seconds * 1000.0, label, name, now_ms=now_ms)
        elif kind == "timer-cancelled":
            book.cancel(name, now_ms=now_ms)
            self.paused.pop(timer_id, None)
            self.labels.pop(timer_id, None)
        elif kind == "timer-finished":
            label = self.labels.pop(timer_id, "Home Assistant")
            self.paused.pop(timer_id, None)
            if book.cancel(name, now_ms=now_ms):  # still ours to ring: Home Assistant was first
                self.assistant.controls.ring(label)
                self.assistant.bus.publish(Event(EventType.TIMER_FIRED, {"label": label}, now_ms))
        if len(self.labels) > MAX_PAUSED * 4:  # ids Home Assistant never finished
            self.labels.clear()
