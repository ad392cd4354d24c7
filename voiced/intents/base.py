"""What an intent handler is, and what it may ask the assistant to do."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol


class AssistantControls(Protocol):
    """The actions intents may take; the pipeline implements them."""

    def set_timer(self, duration_s: float, label: str) -> None: ...
    def cancel_timers(self) -> int: ...
    def change_volume(self, step: float) -> float: ...
    def local_time(self) -> tuple[int, int, int, int, int]:
        """(hour, minute, weekday 0=Monday, day of month, month)."""
        ...


@dataclass(frozen=True, slots=True)
class IntentMatch:
    intent: str
    reply: str
    slots: dict[str, str] = field(default_factory=dict)
    action: Callable[[], Coroutine[Any, Any, None]] | None = None
    """Run after the reply is decided (an MQTT publish, a webhook...)."""
    stop_speaking: bool = False
    """The intent ends the conversation (stop, never mind): say nothing more."""


class IntentHandler(Protocol):
    def match(self, normalized: str, controls: AssistantControls) -> IntentMatch | None:
        """An IntentMatch when ``normalized`` (see normalize.py) is this intent."""
        ...
