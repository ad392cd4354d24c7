"""The internal event bus: every stage's start and end, for the control plane.

Names follow Home Assistant's assist pipeline events (``wake_word-start``,
``stt-end``, ``tts-end``, ``run-end``...) so dashboards line up; the few that HA
has no name for are voiced's own and say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_LOGGER = logging.getLogger(__name__)
SUBSCRIBER_QUEUE_LEN = 256


class EventType(StrEnum):
    RUN_START = "run-start"
    RUN_END = "run-end"
    WAKE_WORD_START = "wake_word-start"
    WAKE_WORD_END = "wake_word-end"
    STT_START = "stt-start"
    STT_VAD_START = "stt-vad-start"
    STT_VAD_END = "stt-vad-end"
    STT_END = "stt-end"
    INTENT_START = "intent-start"
    INTENT_PROGRESS = "intent-progress"
    INTENT_END = "intent-end"
    TTS_START = "tts-start"
    TTS_END = "tts-end"
    ERROR = "error"
    # voiced's own
    STATE_CHANGED = "state-changed"
    PLAYBACK_START = "playback-start"
    PLAYBACK_END = "playback-end"
    BARGE_IN = "barge-in"
    ANSWERED_ELSEWHERE = "answered-elsewhere"
    """voiced's own: another device heard this wake word louder and answers it (data:
    turn_id, winner, level_db, winner_level_db); this one dropped the turn."""
    WORD_HEARD = "word-heard"
    """voiced's own: a [[wake.words]] word other than the wake word (data: word, action)."""
    TIMER_FIRED = "timer-fired"
    MUTED = "muted"
    MIC_LOST = "mic-lost"
    MIC_RESTORED = "mic-restored"
    SPEAKER_LOST = "speaker-lost"
    SPEAKER_RESTORED = "speaker-restored"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    stream_ms: float = 0.0
    """Position in the audio stream when it happened (ms from stream start)."""
    wall_time_s: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "data": self.data,
            "stream_ms": round(self.stream_ms, 1),
            "timestamp": self.wall_time_s,
        }


class EventBus:
    """Fan-out of events to subscribers. ``publish`` never blocks and never fails:
    a subscriber that falls behind loses its oldest events, not the voice path."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, maxsize: int = SUBSCRIBER_QUEUE_LEN) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous callback run for every event (keep it quick)."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                _LOGGER.exception("event listener failed on %s", event.type)
