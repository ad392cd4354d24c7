"""One pipeline run, one method per stage (after Home Assistant's assist_pipeline):
``stt()``, ``recognize()``, ``act()``, ``reply()``. Each stage emits its start and
end event at most once per run, through the run's outbox (held while the run is
speculative). ``finish()`` ends the run exactly once, whoever calls it first: the
run itself, or the assistant stopping it (barge-in, stop, mute, close), which
closes the outbox so nothing the cancelled task still does reaches anyone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from voiced.audio.sinks import AudioSink
from voiced.engines.base import SpeechToText
from voiced.errors import SpeakerLostError, VoicedError
from voiced.house.arbiter import Contest
from voiced.intents.base import IntentMatch
from voiced.pipeline.chunker import ChunkerSettings, SpeechChunker
from voiced.pipeline.clock import StreamClock
from voiced.pipeline.controls import Announcement, Controls
from voiced.pipeline.events import EventType
from voiced.pipeline.outbox import Outbox
from voiced.pipeline.responder import Responder, Response
from voiced.pipeline.speaker import Speaker
from voiced.pipeline.turn import TurnRecord
from voiced.ratelimit import RateLimitedLog

_LOGGER = logging.getLogger(__name__)
DRAIN_WALL_GRACE_S = 10.0
"""The same on the wall clock, for when the microphone stops too."""
MAX_REPLY_CHUNKS = 256
ANSWERED_ELSEWHERE = "answered_elsewhere"
"""The outcome of a turn another device answers (voiced.house)."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every run needs, built once by the assistant."""

    asr: SpeechToText
    asr_executor: concurrent.futures.Executor
    responder: Responder
    speaker: Speaker
    sink: AudioSink
    controls: Controls
    clock: StreamClock
    errors_log: RateLimitedLog
    first_chunk_max_words: int
    hold: Callable[[asyncio.Task[None]], None]
    speaker_health: Callable[[bool], None]
    """Told after each drain whether the speaker played out (False: it is lost)."""
    drain_grace_ms: float = 2000.0
    """How long after its audio should have played out a reply may still be draining
    before the speaker counts as lost (audio.drain_grace_ms)."""


class TurnRun:
    def __init__(
        self, ctx: RunContext, turn: TurnRecord, outbox: Outbox, *,
        on_done: Callable[[TurnRun], None], on_first_audio: Callable[[TurnRun], None],
    ) -> None:  # fmt: skip
        self.ctx = ctx
        self.turn = turn
        self.outbox = outbox
        self.gate = asyncio.Event()
        """Set once the run is committed; a plain run is committed from the start."""
        if not outbox.held:
            self.gate.set()
        self._on_done = on_done
        self._on_first_audio = on_first_audio
        self.transcript: str | None = None
        self.match: IntentMatch | None = None
        self.finished = False
        self.failed = False
        self.ringing: Announcement | None = None
        """Set for a run heard in a timer's ring window: only a stop is for us."""
        self.contest: Contest | None = None
        """Other devices heard the wake word too: answer only once this one won."""
        self._audio_end_ms = 0.0

    # -- ending ---------------------------------------------------------------

    def finish(self, outcome: str, error: str | None = None) -> bool:
        """End the run (first call wins): run-end goes out, the outbox closes."""
        if self.finished:
            return False
        self.finished = True
        turn = self.turn
        turn.outcome, turn.error = outcome, error
        turn.done_ms = self.ctx.clock.now_ms()
        self.outbox.emit(EventType.RUN_END, turn_id=turn.turn_id, outcome=outcome)
        self.outbox.close()
        self._on_done(self)
        return True

    def discard(self) -> None:
        """A speculative run that never happened: no run-end, nothing sent."""
        self.finished = True
        self.outbox.close()

    def fail(self, err: Exception) -> None:
        """Report a failed run; the user hears nothing more of it, and no traceback."""
        if isinstance(err, VoicedError):
            code, message = err.code, err.message
            self.ctx.errors_log.log(logging.ERROR, code, "turn %d failed: %s",
                                    self.turn.turn_id, message)  # fmt: skip
        else:
            code, message = "internal", f"{type(err).__name__}: {err}"
            _LOGGER.exception("turn %d failed unexpectedly", self.turn.turn_id)
        if not self.finished:
            self.outbox.emit(EventType.ERROR, turn_id=self.turn.turn_id, code=code,
                             message=message)  # fmt: skip
            self.ctx.sink.clear()
        self.finish("error", message)

    # -- whole runs -----------------------------------------------------------

    async def voice(
        self, audio: bytes, *, accurate: bool = False,
        on_transcript: Callable[[TurnRun, str], None] | None = None,
    ) -> None:  # fmt: skip
        """A spoken turn: transcribe, wait to be committed, then answer."""
        try:
            text = await self.stt(audio, accurate=accurate)
            if on_transcript is not None:
                on_transcript(self, text)
            await self.gate.wait()
            if self.contest is not None:
                self.contest.wanted_at_ms = self.ctx.clock.now_ms()
                await self.contest.decided.wait()
                if self.contest.verdict is None or not self.contest.verdict.won:
                    self.finish(ANSWERED_ELSEWHERE)
                    return
            if not text:
                self.finish("empty_transcript")
                return
            heard = self.ctx.responder.match_intent(text) if self.ringing else None
            if self.ringing is not None and not _stops_ringing(heard):
                self.finish("ignored")  # said near a ringing timer, not to us
                return
            await self.answer(text, speak=True)
        except asyncio.CancelledError:
            self.finish("cancelled")
            raise
        except Exception as err:  # noqa: BLE001 - a failed turn must never stop listening
            if self.outbox.held:
                self.failed = True  # committing will run the turn afresh
            else:
                self.fail(err)

    async def text(self, text: str, *, speak: bool) -> None:
        """API ask: text in, reply out (spoken when ``speak``)."""
        try:
            await self.answer(text, speak=speak)
        except asyncio.CancelledError:
            self.finish("cancelled")
            raise
        except Exception as err:  # noqa: BLE001 - see voice()
            self.fail(err)

    async def say(self, text: str) -> None:
        """An announcement: speak ``text``, nothing to recognise or do."""
        try:
            self.turn.reply = text
            await self.tts(_chunks([text]), proceed=None)
            self.finish("answered")
        except asyncio.CancelledError:
            self.finish("cancelled")
            raise
        except Exception as err:  # noqa: BLE001 - see voice()
            self.fail(err)

    async def answer(self, text: str, *, speak: bool) -> None:
        response = self.recognize(text)
        self.act(response)
        await self.reply(response, speak=speak)
        self.finish("answered")

    # -- the stages -----------------------------------------------------------

    async def stt(self, audio: bytes, *, accurate: bool = False) -> str:
        loop = asyncio.get_running_loop()
        abandon = threading.Event()
        transcribe = functools.partial(
            self.ctx.asr.transcribe, audio, careful=accurate, abandon=abandon
        )
        try:
            result = await loop.run_in_executor(self.ctx.asr_executor, transcribe)
        except asyncio.CancelledError:
            # The thread cannot be interrupted, but it can skip decoding what is no
            # longer wanted, so the next transcription waits less for the thread.
            abandon.set()
            raise
        turn = self.turn
        turn.asr_done_ms = self.ctx.clock.now_ms()
        turn.transcript = self.transcript = result.text
        self.outbox.emit(EventType.STT_END, turn_id=turn.turn_id, text=result.text,
                         compute_ms=round(result.compute_ms, 1))  # fmt: skip
        _LOGGER.debug("turn %d heard: %s", turn.turn_id, result.text)
        return result.text

    def recognize(self, text: str) -> Response:
        """Pure: what the reply is and what would be done; nothing is done."""
        turn = self.turn
        self.outbox.emit(EventType.INTENT_START, turn_id=turn.turn_id, text=text)
        response = self.ctx.responder.respond(
            text, self.ctx.clock.now_ms() / 1000.0, remember=self.outbox.defer
        )
        turn.intent, turn.slots = response.intent, response.slots
        self.match = response.match
        return response

    def act(self, response: Response) -> None:
        """The one place a command changes the world, once, and only when committed."""
        match = response.match
        if match is None:
            return
        controls, hold = self.ctx.controls, self.ctx.hold
        self.outbox.defer(lambda: controls.apply(match))
        if match.action is not None:
            action = match.action
            self.outbox.defer(lambda: hold(asyncio.create_task(action())))

    async def reply(self, response: Response, *, speak: bool) -> None:
        """The reply text as it comes, into speech as it comes; intent-end once known."""
        turn = self.turn
        # The language model waits while the first words are synthesised: on two
        # cores it would otherwise halve the speed of the synthesis the user is
        # waiting for, while the rest of the reply is not yet needed.
        proceed = response.proceed if speak else None
        clauses = _Clauses(self, proceed, streamed=response.streamed)
        speak_task = asyncio.create_task(self.tts(clauses.queue, proceed)) if speak else None
        if speak_task is not None and proceed is not None:
            # A synthesis that fails before the first words must not leave the
            # model paused between tokens.
            speak_task.add_done_callback(lambda _task: proceed.set())
        try:
            async for delta in response.deltas:
                if turn.first_token_ms is None:
                    turn.first_token_ms = self.ctx.clock.now_ms()
                clauses.feed(delta)
                if speak_task is not None and speak_task.done():
                    break  # speech failed: its error ends the run below
            turn.reply = clauses.finish()
            self.outbox.emit(EventType.INTENT_END, turn_id=turn.turn_id, reply=turn.reply,
                             intent=turn.intent, slots=turn.slots)  # fmt: skip
            if speak_task is not None:
                await speak_task
        finally:
            if proceed is not None:
                proceed.set()
            if speak_task is not None and not speak_task.done():
                speak_task.cancel()
            # Left early (speech failed): close the model's stream now, so its
            # thread stops at the next token instead of writing on unheard.
            aclose = getattr(response.deltas, "aclose", None)
            if aclose is not None:
                await aclose()

    async def tts(
        self, chunks: asyncio.Queue[str | None], proceed: threading.Event | None
    ) -> None:
        """Synthesis and playback: tts-start/end, playback-start/end, a bounded drain."""
        turn = self.turn
        self.outbox.emit(EventType.TTS_START, turn_id=turn.turn_id)

        def on_first_audio() -> None:
            turn.first_audio_ms = self.ctx.clock.now_ms()
            self._on_first_audio(self)
            self.outbox.emit(EventType.PLAYBACK_START, turn_id=turn.turn_id)

        def on_enqueued(audio_ms: float) -> None:
            self._audio_end_ms = max(self._audio_end_ms, self.ctx.clock.now_ms()) + audio_ms

        spoken = await self.ctx.speaker.speak(
            chunks, on_first_audio, self.gate, lambda: not self.finished,
            on_synthesized=proceed.set if proceed is not None else lambda: None,
            on_enqueued=on_enqueued,
        )  # fmt: skip
        self.outbox.emit(EventType.TTS_END, turn_id=turn.turn_id, text=spoken)
        if turn.first_audio_ms is not None:
            await self.drain()
            self.outbox.emit(EventType.PLAYBACK_END, turn_id=turn.turn_id)

    async def drain(self) -> None:
        """Until the speaker has played it all, for at most the audio's length plus a
        grace: a speaker that vanished ends the run with an error, never a hang."""
        ctx = self.ctx
        deadline_ms = self._audio_end_ms + ctx.drain_grace_ms
        drained = asyncio.ensure_future(ctx.sink.drained())
        overdue = asyncio.ensure_future(ctx.clock.reached(deadline_ms))
        wall_s = max(0.0, deadline_ms - ctx.clock.now_ms()) / 1000.0 + DRAIN_WALL_GRACE_S
        try:
            await asyncio.wait({drained, overdue}, timeout=wall_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            overdue.cancel()
            if not drained.done():
                drained.cancel()
        ok = drained.done() and not drained.cancelled()
        ctx.speaker_health(ok)
        if not ok:
            raise SpeakerLostError(
                "the speaker stopped playing: the reply did not play out",
                fix="check the speaker's cable or USB connection (voiced devices)",
            )


class _Clauses:
    """The reply cut into speakable pieces for the TTS stage, capped.

    A model's reply is cut into clauses as it streams, so speech starts while the
    model still writes. A reply known in full (an intent's) is one piece: it keeps
    its intonation and can play from the phrase cache.
    """

    def __init__(self, run: TurnRun, proceed: threading.Event | None, *, streamed: bool) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._run = run
        self._proceed = proceed
        self._chunker = SpeechChunker(
            ChunkerSettings(first_chunk_max_words=run.ctx.first_chunk_max_words)
        ) if streamed else None  # fmt: skip
        self._text: list[str] = []
        self._queued = 0

    def feed(self, delta: str) -> None:
        self._text.append(delta)
        if self._chunker is not None:
            for chunk in self._chunker.feed(delta):
                self._put(chunk)

    def finish(self) -> str:
        """The whole reply; the last pieces and the end go to the queue."""
        whole = "".join(self._text).strip()
        rest = self._chunker.flush() if self._chunker is not None else [whole] if whole else []
        for chunk in rest:
            self._put(chunk)
        self.queue.put_nowait(None)
        return whole

    def _put(self, chunk: str) -> None:
        turn = self._run.turn
        if turn.first_chunk_ms is None:
            turn.first_chunk_ms = self._run.ctx.clock.now_ms()
            if self._proceed is not None:
                self._proceed.clear()
        if self._queued < MAX_REPLY_CHUNKS:
            self._queued += 1
            self.queue.put_nowait(chunk)


def _stops_ringing(match: IntentMatch | None) -> bool:
    return match is not None and (match.stop_speaking or match.intent.startswith("timer"))


def _chunks(texts: list[str]) -> asyncio.Queue[str | None]:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    queue.put_nowait(None)
    return queue
