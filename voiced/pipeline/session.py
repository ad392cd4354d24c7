"""The session: exactly one of these states, each holding exactly what it needs.

"Listening without a turn", "speaking with nothing to drain" or "muted while a
command is heard" cannot be written down: a Listening state owns its turn,
endpointer, buffer and speculative run; a Responding state owns its run and the
task that drives it; Muted can only hold an announcement that is playing.
The public name of each (voiced.pipeline.state.State) is derived, never stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from voiced.house.arbiter import Contest
from voiced.pipeline.controls import Announcement
from voiced.pipeline.endpointer import Endpointer
from voiced.pipeline.outbox import Outbox
from voiced.pipeline.run import TurnRun
from voiced.pipeline.speculative import SpeculativeRun
from voiced.pipeline.state import State
from voiced.pipeline.turn import TurnRecord


@dataclass(slots=True)
class Idle:
    @property
    def state(self) -> State:
        return State.IDLE


@dataclass(slots=True)
class Listening:
    turn: TurnRecord
    outbox: Outbox
    """Where this turn's events go until a run takes over (run-start, stt-start...)."""
    endpointer: Endpointer
    max_bytes: int
    """The utterance buffer's cap: longer than any utterance the endpointer allows."""
    utterance: bytearray = field(default_factory=bytearray)
    speculative: SpeculativeRun | None = None
    deaf_until_sample: int = 0
    """Speech before this stream position is not heard (a reply's tail in the room)."""
    ringing: Announcement | None = None
    """A timer alert just played: this window hears "stop" without the wake word
    (and nothing else); unanswered, the alert rings again."""
    contest: Contest | None = None
    """Other devices heard this wake word too: which one answers (voiced.house)."""

    @property
    def state(self) -> State:
        return State.LISTENING

    def append(self, pcm: bytes) -> None:
        if len(self.utterance) + len(pcm) <= self.max_bytes:
            self.utterance += pcm

    def drop_speculative(self) -> None:
        if self.speculative is not None:
            self.speculative.discard()
            self.speculative = None


@dataclass(slots=True)
class Responding:
    run: TurnRun
    task: asyncio.Task[None]
    speaking: bool = False
    """The first audio of the reply has gone to the speaker."""
    announcement: Announcement | None = None
    """What a say run is saying (a timer alert rings again unless stopped)."""

    @property
    def state(self) -> State:
        return State.SPEAKING if self.speaking else State.THINKING


@dataclass(slots=True)
class Muted:
    """The microphone is off: nothing is heard or acted on. Announcements (timer
    alerts, API say) still play; ``playing`` is the one playing now."""

    playing: Responding | None = None

    @property
    def state(self) -> State:
        return State.MUTED


Session = Idle | Listening | Responding | Muted
