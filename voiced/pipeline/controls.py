"""The one place that acts: timers, volume and announcements.

Intents only describe effects (voiced.intents.effects); a committed run hands
them here, once. This is also the read-only view intents word their replies from.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from voiced.intents.base import IntentMatch, TimerView
from voiced.intents.builtin import clamp_volume
from voiced.intents.effects import CancelTimers, ChangeVolume, Effect, SetTimer, StopSpeaking
from voiced.pipeline.timers import TimerBook

_LOGGER = logging.getLogger(__name__)
MAX_ANNOUNCEMENTS = 16
ALERT_RINGS = 1
"""A timer alert is said up to this many times, until someone says "stop" (the
default of listen.alert_rings)."""


@dataclass(frozen=True, slots=True)
class Announcement:
    text: str
    alert: bool = False
    """A timer's alert: never dropped for a plain announcement; it rings again."""
    rings_left: int = 1
    """Including this one."""
TIMERS_FILE = "timers.json"


class Controls:
    def __init__(
        self, *, volume: float, now_ms: Callable[[], float], state_dir: Path | None = None,
        stop_speaking: Callable[[], None] = lambda: None, alert_rings: int = ALERT_RINGS,
    ) -> None:  # fmt: skip
        self.volume = max(0.0, min(1.0, volume))
        self._now_ms = now_ms
        self.timers = TimerBook(state_dir / TIMERS_FILE if state_dir else None, now_ms=now_ms())
        self.announcements: deque[Announcement] = deque()
        """Spoken in order once the assistant is free."""
        self._stop_speaking = stop_speaking
        self._alert_rings = alert_rings

    @property
    def view(self) -> ControlsView:
        """What intents may read (voiced.intents.base.WorldView)."""
        return ControlsView(self)

    def timers_view(self) -> list[TimerView]:
        now = self._now_ms()
        return [TimerView(t.name, t.label, max(0.0, (t.due_ms - now) / 1000.0))
                for t in self.timers.running()]  # fmt: skip

    def local_time(self) -> tuple[int, int, int, int, int]:
        now = time.localtime()
        return now.tm_hour, now.tm_min, now.tm_wday, now.tm_mday, now.tm_mon

    # -- acting -----------------------------------------------------------------

    def apply(self, match: IntentMatch) -> None:
        """Apply a committed match's effects: called exactly once per command."""
        for effect in match.effects:
            self.apply_effect(effect)

    def apply_effect(self, effect: Effect) -> None:
        now = self._now_ms()
        if isinstance(effect, SetTimer):
            if not self.timers.add(now + effect.duration_s * 1000.0, effect.label, effect.name,
                                   now_ms=now):  # fmt: skip
                _LOGGER.warning("timer refused: %d timers are running", self.timers.pending)
        elif isinstance(effect, CancelTimers):
            self.timers.cancel(effect.name, now_ms=now)
        elif isinstance(effect, ChangeVolume):
            self.volume = clamp_volume(self.volume + effect.step)
        elif isinstance(effect, StopSpeaking):
            self.announcements = deque(a for a in self.announcements if not a.alert)
            self._stop_speaking()

    def due_alerts(self) -> list[str]:
        """Labels of timers that fire now; their alerts are queued to be spoken."""
        fired = self.timers.due(self._now_ms())
        for label in fired:
            self.ring(label)
        return fired

    def ring(self, label: str) -> None:
        """Queue a timer's alert (also for a timer kept elsewhere: Home Assistant's)."""
        self.announce(f"Your {label} timer is done.", alert=True, rings=self._alert_rings)

    def announce(self, text: str, *, alert: bool = False, rings: int = 1) -> bool:
        """Queue ``text``; a timer alert is never dropped: when the queue is full the
        oldest plain announcement gives way, and only alerts beyond the cap are
        refused (logged)."""
        if len(self.announcements) >= MAX_ANNOUNCEMENTS:
            plain = next((a for a in self.announcements if not a.alert), None)
            if plain is None or not alert:
                _LOGGER.warning("announcement dropped: %d are waiting", len(self.announcements))
                return False
            self.announcements.remove(plain)
        self.announcements.append(Announcement(text, alert, rings))
        return True

    def ring_again(self, alert: Announcement) -> None:
        """Nobody stopped the alert: it comes again, first, one ring fewer."""
        if alert.rings_left > 1:
            self.announcements.appendleft(replace(alert, rings_left=alert.rings_left - 1))

    def next_announcement(self) -> Announcement | None:
        return self.announcements.popleft() if self.announcements else None

    def clear_announcements(self) -> None:
        self.announcements.clear()


class ControlsView:
    """The read-only face of Controls that intents get."""

    def __init__(self, controls: Controls) -> None:
        self._controls = controls

    @property
    def volume(self) -> float:
        return self._controls.volume

    def timers(self) -> list[TimerView]:
        return self._controls.timers_view()

    def local_time(self) -> tuple[int, int, int, int, int]:
        return self._controls.local_time()
