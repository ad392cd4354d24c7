"""The assistant: hears frames, runs turns, speaks, and can be interrupted.

Frames arrive one at a time through ``feed`` (10 ms of 16 kHz audio). Hearing
(wake word, VAD) runs in a listener thread; a finished utterance starts a turn
task: ASR in its thread, the responder (intents, else the SLM in its thread)
streaming text into the chunker, and the speaker synthesising each clause in
the TTS thread while later clauses are still generated. Barge-in cancels the
turn task; each stage's ``finally`` stops its own worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame, samples_to_ms
from voiced.audio.sinks import AudioSink
from voiced.engines.loader import Engines
from voiced.errors import VoicedError
from voiced.intents.base import IntentHandler
from voiced.intents.builtin import BuiltinIntents
from voiced.pipeline.chunker import ChunkerSettings, SpeechChunker
from voiced.pipeline.clock_phrases import ClockPhrases
from voiced.pipeline.endpointer import (
    Endpointer,
    EndpointerSettings,
    EndpointEvent,
    EndpointEventType,
)
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.listener import Heard, Listener
from voiced.pipeline.quiet import QuietGate
from voiced.pipeline.responder import Responder
from voiced.pipeline.speaker import Speaker
from voiced.pipeline.state import State, StateMachine, Trigger
from voiced.pipeline.timers import TimerBook
from voiced.pipeline.turn import TraceWriter, TurnRecord
from voiced.pipeline.turn_end import looks_like_full_sentence
from voiced.pipeline.vad import WebRtcVad
from voiced.pipeline.workers import Workers
from voiced.ratelimit import RateLimitedLog
from voiced.settings import Settings

_LOGGER = logging.getLogger(__name__)
PREROLL_MS = 300
WAKE_BATCH_BYTES = 3 * FRAME_SAMPLES * 2
NOTHING_HEARD = Heard(wake=False, speech=False)
RECENT_TURNS = 20


class Assistant:
    def __init__(
        self, settings: Settings, engines: Engines, sink: AudioSink, bus: EventBus, *,
        wake_mode: bool = True, trace: TraceWriter | None = None,
        extra_intents: list[IntentHandler] | None = None,
    ) -> None:  # fmt: skip
        if engines.asr is None or engines.tts is None:
            raise VoicedError("the assistant needs the ASR and TTS engines")
        self.settings = settings
        self.engines = engines
        self.asr = engines.asr
        self.sink = sink
        self.bus = bus
        self.wake_mode = wake_mode and engines.wake is not None
        self.trace = trace
        self.workers = Workers.create()
        # Everything loaded so far (models, tokenizers, tables) lives for the whole
        # run: moving it out of the collector's reach keeps a full collection from
        # pausing the event loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self.machine = StateMachine()
        self.listener = Listener(
            engines.wake, WebRtcVad(settings.listen.vad_aggressiveness),
            QuietGate() if settings.listen.speculate_on_quiet else None,
        )  # fmt: skip
        listen = settings.listen
        self._idle_endpointer = Endpointer(_endpointer_settings(settings, timeout_ms=None))
        self._wake_endpointer = Endpointer(
            _endpointer_settings(settings, timeout_ms=listen.no_speech_timeout_ms)
        )
        self._follow_up_endpointer = Endpointer(
            _endpointer_settings(settings, timeout_ms=max(1, listen.follow_up_window_ms))
        )
        self.endpointer = self._idle_endpointer
        self.responder = Responder(
            [*(extra_intents or []), BuiltinIntents()], engines.slm, settings.slm, self,
            self.workers.slm,
        )  # fmt: skip
        self.speaker = Speaker(engines.tts, sink, self.workers.tts, lambda: self.volume)
        self.timers = TimerBook()
        self.volume = max(0.0, min(1.0, settings.audio.volume))
        self.position_samples = 0
        self.frames_seen = 0
        self.first_frame = asyncio.Event()
        self._position_wall_s = time.monotonic()
        self._utterance = bytearray()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_MS // 10)
        self._wake_batch = bytearray()
        self._errors_log = RateLimitedLog(_LOGGER)
        self._clock_phrases = (
            ClockPhrases(engines.tts, self.workers.tts, self._errors_log)
            if settings.tts.prepare_clock_replies else None
        )  # fmt: skip
        self._playback_epoch = 0
        """Bumped by barge-in and stop: audio of an earlier epoch never plays."""
        self._turn_task: asyncio.Task[None] | None = None
        self._speculative: asyncio.Task[None] | None = None
        """A turn started at the first pause, its playback held until the end is committed."""
        self._commit_gate = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._current: TurnRecord | None = None
        self._listening_turn: TurnRecord | None = None
        self._announcements: deque[str] = deque(maxlen=8)
        self._next_turn_id = 1
        self.recent_turns: deque[TurnRecord] = deque(maxlen=RECENT_TURNS)
        self.on_turn_done: list[Callable[[TurnRecord], None]] = []

    # -- the stream clock -------------------------------------------------

    def now_ms(self) -> float:
        """ms since stream start: the audio position plus the time since that frame."""
        elapsed_ms = (time.monotonic() - self._position_wall_s) * 1000.0
        return samples_to_ms(self.position_samples) + elapsed_ms

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def busy(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    def _fire(self, trigger: Trigger) -> None:
        before = self.machine.state
        if self.machine.fire(trigger):
            self._emit(EventType.STATE_CHANGED, state=self.machine.state.value,
                       previous=before.value, trigger=trigger.value)  # fmt: skip

    def _emit(self, kind: EventType, **data: object) -> None:
        self.bus.publish(Event(kind, dict(data), stream_ms=self.now_ms()))

    # -- frames -----------------------------------------------------------

    async def feed(self, frame: AudioFrame) -> None:
        """Take one frame of microphone (or file) audio."""
        self.frames_seen += 1
        self.first_frame.set()
        self.position_samples = frame.end_sample
        self._position_wall_s = time.monotonic()
        self.sink.tick(frame.num_samples)
        for label in self.timers.due(self.now_ms()):
            self._emit(EventType.TIMER_FIRED, label=label)
            self.announce(f"Your {label} timer is done.")
        state = self.machine.state
        if state is State.MUTED:
            return
        speaking = state in (State.THINKING, State.SPEAKING)
        listen = self.settings.listen
        # Run only the detectors this state needs: idle in wake mode is the state
        # the device spends its life in, so it pays for the wake word alone.
        score_wake = self.wake_mode and state is not State.LISTENING and (
            not speaking or listen.barge_in)  # fmt: skip
        detect_speech = (
            state is State.LISTENING or (state is State.IDLE and not self.wake_mode)
            or (speaking and listen.barge_in_on_speech)
        )  # fmt: skip
        heard = await self._hear(frame.pcm, score_wake, detect_speech)
        if speaking:
            if heard.wake or (listen.barge_in_on_speech and heard.speech):
                self.barge_in("wake word" if heard.wake else "speech")
                if heard.wake:
                    self._start_listening(wake=True)
            return
        if state is State.IDLE:
            self._preroll.append(frame.pcm)
            self._prepare_clock_replies()
            if heard.wake:
                self._start_listening(wake=True)
                return
            if not self.wake_mode or self._announcements:
                self._idle_hear(heard.speech, frame)
            return
        if state is State.LISTENING:
            self._utterance += frame.pcm
            events = self.endpointer.process(heard.speech, frame.duration_ms, quiet=heard.quiet)
            for event in events:
                self._on_endpoint(event)

    async def _hear(self, pcm: bytes, score_wake: bool, detect_speech: bool) -> Heard:
        """Wake word and VAD in the listener thread. Waiting for the wake word alone
        (the state a device spends its life in) goes in 30 ms batches, the wake
        model's own stride, so the thread hand-off costs a third as much."""
        if score_wake and not detect_speech:
            self._wake_batch += pcm
            if len(self._wake_batch) < WAKE_BATCH_BYTES:
                return NOTHING_HEARD
            pcm, self._wake_batch = bytes(self._wake_batch), bytearray()
        elif self._wake_batch:
            self._wake_batch.clear()
        return await asyncio.get_running_loop().run_in_executor(
            self.workers.listen, lambda: self.listener.hear(
                pcm, score_wake=score_wake, detect_speech=detect_speech),
        )  # fmt: skip

    def _prepare_clock_replies(self) -> None:
        now_s = time.time()
        if self._clock_phrases is not None and self._clock_phrases.due(now_s):
            self._hold(asyncio.create_task(self._clock_phrases.prepare(now_s)))

    def _idle_hear(self, speech: bool, frame: AudioFrame) -> None:
        if self._announcements:
            self._start_say(self._announcements.popleft())
            return
        if self.endpointer is not self._idle_endpointer or self.endpointer.done:
            self.endpointer = self._idle_endpointer
            self.endpointer.reset(frame.start_sample)
        for event in self.endpointer.process(speech, frame.duration_ms):
            if event.type is EndpointEventType.SPEECH_START:
                self._start_listening(wake=False)  # the endpointer keeps its state
                self._utterance = bytearray(b"".join(self._preroll))
                self._preroll.clear()
                self._on_endpoint(event)

    def _start_listening(self, *, wake: bool) -> None:
        turn = TurnRecord(self._new_turn_id())
        if wake:
            turn.wake_ms = self.now_ms()
            self._emit(EventType.WAKE_WORD_END, turn_id=turn.turn_id,
                       wake_word=self.engines.paths.names.get("wake", ""))  # fmt: skip
        self._listening_turn = turn
        self._emit(EventType.RUN_START, turn_id=turn.turn_id)
        self._emit(EventType.STT_START, turn_id=turn.turn_id)
        self._utterance = bytearray()
        self._drop_speculative()
        if wake:
            self._preroll.clear()
            self.endpointer = self._wake_endpointer
            self.endpointer.reset(self.position_samples)
        self._fire(Trigger.WAKE)

    def _on_endpoint(self, event: EndpointEvent) -> None:
        turn = self._listening_turn
        if turn is None:
            return
        kind = event.type
        if kind is EndpointEventType.SPEECH_START:
            turn.speech_start_ms = event.speech_start_ms
            self._emit(EventType.STT_VAD_START, turn_id=turn.turn_id)
        elif kind is EndpointEventType.SPECULATIVE_END:
            # Run the whole turn now, during the silence that may end the utterance,
            # holding its playback and side effects until the end is committed.
            turn.speech_end_ms = event.speech_end_ms
            self._drop_speculative()
            self._commit_gate = asyncio.Event()
            self._speculative = asyncio.create_task(
                self._run_turn(turn, bytes(self._utterance), None, True, self._commit_gate)
            )
        elif kind is EndpointEventType.SPEECH_RESUMED:
            self._drop_speculative()
        elif kind is EndpointEventType.SPEECH_END:
            turn.speech_end_ms = event.speech_end_ms
            self._commit(turn)
        elif kind is EndpointEventType.TIMEOUT:
            turn.outcome = "no_speech"
            self._finish_turn(turn, Trigger.NO_SPEECH)

    # -- turns --------------------------------------------------------------

    def _new_turn_id(self) -> int:
        self._next_turn_id += 1
        return self._next_turn_id - 1

    def _commit(self, turn: TurnRecord) -> None:
        """The utterance has ended: release the speculative turn, or start one."""
        if self._listening_turn is not turn:
            return
        turn.endpoint_ms = self.now_ms()
        self._emit(EventType.STT_VAD_END, turn_id=turn.turn_id)
        self._listening_turn = None
        self._fire(Trigger.SPEECH_END)
        speculative, self._speculative = self._speculative, None
        if speculative is not None and not speculative.done() and self._trusted(turn):
            self._current, self._turn_task = turn, speculative
            self._commit_gate.set()
            return
        # No speculative run, it failed, or it heard a cut-off sentence ("living
        # room like..."): transcribe the whole utterance now that it has ended,
        # with a wider window, which is slower but hears such endings better.
        accurate = speculative is not None
        if speculative is not None:
            speculative.cancel()
            self._hold(speculative)
            turn = dataclasses.replace(turn)  # the cancelled run may still reset its own
            _reset_turn_progress(turn)
        self._begin_turn(turn, audio=bytes(self._utterance), accurate=accurate)

    def _trusted(self, turn: TurnRecord) -> bool:
        """A speculative transcript can stand for the whole utterance unless it is
        known and looks cut off; one still being computed is trusted."""
        if turn.asr_done_ms is None:
            return True
        text = turn.transcript
        return bool(text) and (
            self.responder.match_intent(text) is not None or looks_like_full_sentence(text)
        )

    def _begin_turn(self, turn: TurnRecord, *, audio: bytes | None = None,
                    text: str | None = None, speak: bool = True,
                    accurate: bool = False) -> asyncio.Task[None]:  # fmt: skip
        self._listening_turn = None
        self._current = turn
        committed = _already_committed()
        task = asyncio.create_task(
            self._run_turn(turn, audio, text, speak, committed, accurate=accurate)
        )
        self._turn_task = task
        return task

    async def _run_turn(
        self, turn: TurnRecord, audio: bytes | None, text: str | None, speak: bool,
        committed: asyncio.Event, *, accurate: bool = False,
    ) -> None:  # fmt: skip
        """One turn. Until ``committed`` is set it is speculative: it may be cancelled
        (speech resumed) and then leaves no trace, no sound and no side effect."""
        try:
            if text is None:
                text = await self._transcribe(turn, audio or b"", accurate=accurate)
                if not committed.is_set() and self._looks_complete(text):
                    self._commit(turn)
            await committed.wait()
            if not text:
                turn.outcome = "empty_transcript"
                self._finish_turn(turn, Trigger.CANCEL)
                return
            await self._respond(turn, text, speak, committed)
            turn.outcome = "answered"
            self._finish_turn(turn, self._after_reply_trigger(turn))
        except asyncio.CancelledError:
            if committed.is_set():
                if turn.outcome == "pending":
                    turn.outcome = "cancelled"
                self._finish_turn(turn, None)
            else:
                _reset_turn_progress(turn)
            raise
        except Exception as err:  # noqa: BLE001 - a failed turn must never stop listening
            if committed.is_set():
                self._turn_failed(turn, err)
            else:
                _reset_turn_progress(turn)  # committing will run the turn afresh

    def _turn_failed(self, turn: TurnRecord, err: Exception) -> None:
        """Report a failed turn and go back to listening; nothing is left half-done."""
        if isinstance(err, VoicedError):
            code, message = err.code, err.message
            self._errors_log.log(logging.ERROR, code, "turn %d failed: %s", turn.turn_id, message)
        else:
            code, message = "internal", f"{type(err).__name__}: {err}"
            _LOGGER.exception("turn %d failed unexpectedly", turn.turn_id)
        turn.outcome, turn.error = "error", message
        self._emit(EventType.ERROR, turn_id=turn.turn_id, code=code, message=message)
        self.sink.clear()
        self._finish_turn(turn, Trigger.CANCEL)

    def _drop_speculative(self) -> None:
        """Cancel a speculative turn: the speaker resumed, so it never happened."""
        if self._speculative is not None:
            self._speculative.cancel()
            self._hold(self._speculative)
            self._speculative = None

    def _looks_complete(self, text: str) -> bool:
        """Early commit: a local intent, or a finished sentence, needs no more silence."""
        if not self.settings.listen.early_commit or not text:
            return False
        return self.responder.match_intent(text) is not None or looks_like_full_sentence(text)

    async def _transcribe(self, turn: TurnRecord, audio: bytes, *, accurate: bool) -> str:
        loop = asyncio.get_running_loop()
        abandon = threading.Event()
        transcribe = functools.partial(
            self.asr.transcribe, audio, careful=accurate, abandon=abandon
        )
        try:
            result = await loop.run_in_executor(self.workers.asr, transcribe)
        except asyncio.CancelledError:
            # The thread cannot be interrupted, but it can skip decoding what is no
            # longer wanted, so the next transcription waits less for the thread.
            abandon.set()
            raise
        turn.asr_done_ms = self.now_ms()
        turn.transcript = result.text
        self._emit(EventType.STT_END, turn_id=turn.turn_id, text=result.text,
                   compute_ms=round(result.compute_ms, 1))  # fmt: skip
        _LOGGER.debug("turn %d heard: %s", turn.turn_id, result.text)
        return result.text

    async def _respond(
        self, turn: TurnRecord, text: str, speak: bool, committed: asyncio.Event
    ) -> None:
        self._emit(EventType.INTENT_START, turn_id=turn.turn_id, text=text)
        response = self.responder.respond(text, self.now_ms() / 1000.0)
        turn.intent, turn.slots = response.intent, response.slots
        match = response.match
        if match is not None:
            await committed.wait()  # side effects only once the utterance is final
            if match.action is not None:
                self._hold(asyncio.create_task(match.action()))
            if match.stop_speaking:
                self.sink.clear()
        chunks: asyncio.Queue[str | None] = asyncio.Queue()
        # The language model waits while the first words are synthesised: on two
        # cores it would otherwise halve the speed of the synthesis the user is
        # waiting for (first words measured at 100-176 ms in the pipeline against
        # 60-107 ms alone), while the rest of the reply is not yet needed.
        proceed = response.proceed if speak else None
        speak_task = (
            asyncio.create_task(self._speak(turn, chunks, committed, proceed)) if speak else None
        )
        # A model's reply is cut into clauses as it streams, so speech starts while
        # the model still writes. A reply known in full (an intent's) is spoken as
        # one piece: it keeps its intonation, and a short one plays straight from
        # the phrase cache ("Today is Friday, November 27." cut at the comma would not).
        chunker = SpeechChunker(
            ChunkerSettings(first_chunk_max_words=self.settings.tts.first_chunk_max_words)
        ) if response.streamed else None  # fmt: skip
        reply: list[str] = []

        def queue_chunk(chunk: str) -> None:
            if turn.first_chunk_ms is None:
                turn.first_chunk_ms = self.now_ms()
                if proceed is not None:
                    proceed.clear()
            chunks.put_nowait(chunk)

        try:
            async for delta in response.deltas:
                if turn.first_token_ms is None:
                    turn.first_token_ms = self.now_ms()
                reply.append(delta)
                if chunker is not None:
                    for chunk in chunker.feed(delta):
                        queue_chunk(chunk)
            whole = "".join(reply).strip()
            for chunk in chunker.flush() if chunker is not None else [whole] if whole else []:
                queue_chunk(chunk)
            chunks.put_nowait(None)
            turn.reply = whole
            self._emit(EventType.INTENT_END, turn_id=turn.turn_id, reply=turn.reply,
                       intent=turn.intent, slots=turn.slots)  # fmt: skip
            if speak_task is not None:
                await speak_task
                await self.sink.drained()
                if turn.first_audio_ms is not None:
                    self._emit(EventType.PLAYBACK_END, turn_id=turn.turn_id)
        finally:
            if proceed is not None:
                proceed.set()
            if speak_task is not None and not speak_task.done():
                speak_task.cancel()

    async def _speak(
        self, turn: TurnRecord, chunks: asyncio.Queue[str | None], committed: asyncio.Event,
        proceed: threading.Event | None = None,
    ) -> None:
        self._emit(EventType.TTS_START, turn_id=turn.turn_id)

        def on_first_audio() -> None:
            turn.first_audio_ms = self.now_ms()
            self._fire(Trigger.FIRST_AUDIO)
            self._emit(EventType.PLAYBACK_START, turn_id=turn.turn_id)

        epoch = self._playback_epoch
        spoken = await self.speaker.speak(
            chunks, on_first_audio, committed, lambda: epoch == self._playback_epoch,
            on_synthesized=proceed.set if proceed is not None else lambda: None,
        )
        self._emit(EventType.TTS_END, turn_id=turn.turn_id, text=spoken)

    def _after_reply_trigger(self, turn: TurnRecord) -> Trigger:
        if self.settings.listen.follow_up_window_ms > 0 and turn.kind == "voice":
            return Trigger.FOLLOW_UP
        return Trigger.REPLY_DONE

    def _finish_turn(self, turn: TurnRecord, trigger: Trigger | None) -> None:
        turn.done_ms = self.now_ms()
        if self._current is turn:
            self._current = None
        if trigger is not None:
            self._fire(trigger)
            if trigger is Trigger.FOLLOW_UP:
                self._start_follow_up()
        self.recent_turns.append(turn)
        self._emit(EventType.RUN_END, turn_id=turn.turn_id, outcome=turn.outcome)
        if self.trace is not None and turn.kind != "say":
            self.trace.write(turn)
        for callback in self.on_turn_done:
            callback(turn)

    def _start_follow_up(self) -> None:
        turn = TurnRecord(self._new_turn_id())
        self._listening_turn = turn
        self._utterance = bytearray()
        self.endpointer = self._follow_up_endpointer
        self.endpointer.reset(self.position_samples)
        self._emit(EventType.RUN_START, turn_id=turn.turn_id, follow_up=True)

    def _hold(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- control ------------------------------------------------------------

    def barge_in(self, reason: str) -> None:
        """Stop speaking and generating now; the next turn starts clean."""
        self._playback_epoch += 1
        dropped_ms = self.sink.clear()
        if self._current is not None:
            self._current.outcome = "barged_in"
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        self._emit(EventType.BARGE_IN, reason=reason, dropped_ms=dropped_ms)
        self._fire(Trigger.BARGE_IN)

    def stop(self) -> None:
        """Stop speaking (API stop): the turn ends, nothing more is said."""
        self._playback_epoch += 1
        self.sink.clear()
        self._announcements.clear()
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        self._fire(Trigger.CANCEL)

    def listen(self) -> None:
        """Start a turn as if the wake word was heard (push to talk)."""
        if self.machine.state is State.IDLE:
            self._start_listening(wake=True)

    def set_muted(self, muted: bool) -> None:
        if muted:
            self.stop()
        self._fire(Trigger.MUTE if muted else Trigger.UNMUTE)
        self._emit(EventType.MUTED, muted=muted)

    def announce(self, text: str) -> None:
        """Speak ``text`` as soon as the assistant is idle (timer alerts, API say)."""
        self._announcements.append(text)

    def _start_say(self, text: str) -> asyncio.Task[None]:
        turn = TurnRecord(self._new_turn_id(), kind="say")
        self._fire(Trigger.SAY)
        self._emit(EventType.RUN_START, turn_id=turn.turn_id, say=True)
        return self._begin_turn_say(turn, text)

    def _begin_turn_say(self, turn: TurnRecord, text: str) -> asyncio.Task[None]:
        self._current = turn

        async def run() -> None:
            try:
                chunks: asyncio.Queue[str | None] = asyncio.Queue()
                for chunk in (text, None):
                    chunks.put_nowait(chunk)
                turn.reply = text
                await self._speak(turn, chunks, _already_committed())
                await self.sink.drained()
                turn.outcome = "answered"
                self._finish_turn(turn, Trigger.REPLY_DONE)
            except asyncio.CancelledError:
                turn.outcome = "cancelled"
                self._finish_turn(turn, None)
                raise
            except Exception as err:  # noqa: BLE001 - see _run_turn
                self._turn_failed(turn, err)

        self._turn_task = asyncio.create_task(run())
        return self._turn_task

    async def ask(self, text: str, *, speak: bool) -> TurnRecord:
        """Text in, reply out (API ask); spoken when ``speak``."""
        turn = TurnRecord(self._new_turn_id(), kind="text", transcript=text)
        if speak:
            self._fire(Trigger.SAY)
            await self._begin_turn(turn, text=text, speak=True)
        else:
            await self._respond(turn, text, False, _already_committed())
            turn.outcome = "answered"
            self._finish_turn(turn, None)
        return turn

    async def wait_turn(self) -> None:
        """Until the turn in progress (if any) has finished."""
        while self._turn_task is not None and not self._turn_task.done():
            await asyncio.wait({self._turn_task})

    def has_pending_work(self, *, include_timers: bool = True) -> bool:
        """A turn, an utterance, an announcement or (optionally) a timer is unfinished."""
        return (
            self.busy or bool(self._announcements) or self.machine.state is State.LISTENING
            or self.sink.is_playing or (include_timers and self.timers.pending > 0)
        )  # fmt: skip

    async def close(self) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
            await asyncio.gather(self._turn_task, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        self.workers.shutdown()

    # -- AssistantControls (for intents) -----------------------------------

    def set_timer(self, duration_s: float, label: str) -> None:
        self.timers.add(self.now_ms() + duration_s * 1000.0, label)

    def cancel_timers(self) -> int:
        return self.timers.cancel_all()

    def change_volume(self, step: float) -> float:
        self.volume = max(0.1, min(1.0, self.volume + step))
        return self.volume

    def local_time(self) -> tuple[int, int, int, int, int]:
        now = time.localtime()
        return now.tm_hour, now.tm_min, now.tm_wday, now.tm_mday, now.tm_mon


def _already_committed() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def _reset_turn_progress(turn: TurnRecord) -> None:
    """Forget what a cancelled speculative run recorded; the turn goes on listening."""
    turn.transcript, turn.reply, turn.intent, turn.slots = "", "", None, {}
    turn.asr_done_ms = turn.first_token_ms = turn.first_chunk_ms = turn.first_audio_ms = None


def _endpointer_settings(settings: Settings, *, timeout_ms: int | None) -> EndpointerSettings:
    listen = settings.listen
    return EndpointerSettings(
        speech_start_ms=listen.speech_start_ms,
        speculative_silence_ms=listen.speculative_silence_ms or None,
        silence_end_ms=listen.silence_end_ms,
        max_speech_ms=listen.max_speech_ms,
        timeout_no_speech_ms=timeout_ms,
    )


__all__ = ["PIPELINE_RATE_HZ", "Assistant"]
