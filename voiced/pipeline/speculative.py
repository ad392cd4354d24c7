"""A speculative run: the turn run at the first pause, before the utterance is over.

It owns everything it started: its task, the audio snapshot it heard, its own
copy of the turn record, and a held outbox with its events and side effects.
``commit()`` releases them once and lets it go on; ``discard()`` drops them and
cancels the task, leaving no trace. Until committed, the run stops before it
recognises or acts (its gate), so a discarded one has only ever transcribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voiced.pipeline.run import TurnRun


class SpeculativeRun:
    def __init__(
        self, run: TurnRun, audio: bytes, hold: Callable[[asyncio.Task[None]], None],
        on_transcript: Callable[[TurnRun, str], None],
    ) -> None:  # fmt: skip
        assert run.outbox.held, "a speculative run writes to a held outbox"
        self.run = run
        self.audio = audio
        self._hold = hold
        self.task = asyncio.create_task(run.voice(audio, on_transcript=on_transcript))

    @property
    def transcript(self) -> str | None:
        """What it heard, once transcribed; None while still transcribing."""
        return self.run.transcript

    @property
    def failed(self) -> bool:
        return self.run.failed or (self.task.done() and not self.run.finished)

    def commit(self) -> None:
        self.run.outbox.commit()
        self.run.gate.set()

    def discard(self) -> None:
        self.run.discard()
        self.task.cancel()
        self._hold(self.task)
