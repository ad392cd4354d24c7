"""What an intent handler is: a pure function from text to what would be done.

Matching never changes the world. A match says what to reply and which effects
to apply; the pipeline applies them exactly once, after the utterance is
committed, from one place (voiced.pipeline.controls). A speculative turn may
match the same words several times at no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from voiced.intents.effects import Effect


@dataclass(frozen=True, slots=True)
class TimerView:
    """A running timer as intents see it."""

    name: str
    """The user's name for it ("pasta"), or "" for an unnamed timer."""
    label: str
    """How it is spoken in the alert ("10 minutes", "pasta")."""
    remaining_s: float


class WorldView(Protocol):
    """What intents may read to word their reply; they cannot change it."""

    @property
    def volume(self) -> float: ...
    def timers(self) -> list[TimerView]: ...
    def local_time(self) -> tuple[int, int, int, int, int]:
        """(hour, minute, weekday 0=Monday, day of month, month)."""
        ...


AssistantControls = WorldView
"""The old name: intents used to act through it; now they only read."""


@dataclass(frozen=True, slots=True)
class IntentMatch:
    intent: str
    reply: str
    slots: dict[str, str] = field(default_factory=dict)
    action: Callable[[], Coroutine[Any, Any, None]] | None = None
    """A user intent's MQTT publish or webhook: called once, after commit."""
    effects: tuple[Effect, ...] = ()
    """What the assistant does (timers, volume, stop), applied once after commit."""
    stop_speaking: bool = False
    """The intent ends the conversation (stop, never mind): say nothing more."""


class IntentHandler(Protocol):
    def match(self, normalized: str, view: WorldView) -> IntentMatch | None:
        """An IntentMatch when ``normalized`` (see normalize.py) is this intent.
        Must not change anything: it may run several times for one utterance."""
        ...
