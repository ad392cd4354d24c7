"""What the control plane (HTTP API, MQTT bridge, metrics) may use of the assistant.

voiced.pipeline.assistant.Assistant satisfies it; tests use a small fake.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from voiced.pipeline.events import EventBus
from voiced.pipeline.state import State
from voiced.pipeline.turn import TurnRecord

MAX_TEXT_CHARS = 2000
"""The longest text accepted for say and ask, over HTTP and MQTT alike."""
MAX_SSE_CLIENTS = 8
"""HTTP event streams served at once; each is a queue the voice path's bus fills."""


class _Paths(Protocol):
    @property
    def names(self) -> Mapping[str, str]: ...


class _Engines(Protocol):
    @property
    def paths(self) -> _Paths: ...


class AssistantSurface(Protocol):
    @property
    def state(self) -> State: ...
    @property
    def busy(self) -> bool: ...
    @property
    def recent_turns(self) -> deque[TurnRecord]: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def frames_seen(self) -> int: ...
    def echo_status(self) -> dict[str, Any]: ...
    @property
    def volume(self) -> float: ...
    @property
    def engines(self) -> _Engines: ...
    @property
    def on_turn_done(self) -> list[Callable[[TurnRecord], None]]: ...

    def announce(self, text: str) -> None: ...
    async def ask(self, text: str, *, speak: bool) -> TurnRecord: ...
    def listen(self) -> None: ...
    def stop(self) -> None: ...
    def set_muted(self, muted: bool) -> None: ...


def snapshot(assistant: AssistantSurface) -> dict[str, Any]:
    """The assistant's state as JSON-ready data (MQTT state, SSE snapshot)."""
    return {
        "state": assistant.state.value,
        "muted": assistant.state is State.MUTED,
        "busy": assistant.busy,
        "volume": round(assistant.volume, 2),
    }
