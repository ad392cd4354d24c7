"""The assistant: a thin coordinator of the session, hearing, runs and controls.

Frames arrive one at a time through ``feed`` (10 ms of 16 kHz audio). Hearing
(wake word, VAD) runs in the listener thread (voiced.pipeline.hearing); the
endpointer of the Listening state decides where an utterance ends; a run
(voiced.pipeline.run) transcribes, recognises, acts once and speaks. At the first
pause a speculative run starts (voiced.pipeline.speculative), held back until
the end is committed. The session (voiced.pipeline.session) is one state object
at a time; stop, mute, barge-in, listen and close each have one defined effect
on every state and end what is in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from voiced.audio.format import PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.sinks import AudioSink
from voiced.engines.loader import Engines
from voiced.errors import VoicedError
from voiced.intents.base import IntentHandler
from voiced.intents.builtin import BuiltinIntents
from voiced.pipeline.clock import StreamClock
from voiced.pipeline.clock_phrases import ClockPhrases, prepare_fixed_replies
from voiced.pipeline.controls import Controls
from voiced.pipeline.endpointer import (
    Endpointer,
    EndpointerSettings,
    EndpointEvent,
    EndpointEventType,
)
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.hearing import PREROLL_MS, Ears, Hearing
from voiced.pipeline.listener import Listener
from voiced.pipeline.outbox import Outbox
from voiced.pipeline.quiet import QuietGate
from voiced.pipeline.responder import Responder
from voiced.pipeline.run import RunContext, TurnRun
from voiced.pipeline.session import Idle, Listening, Muted, Responding, Session
from voiced.pipeline.speaker import Speaker
from voiced.pipeline.speculative import SpeculativeRun
from voiced.pipeline.state import State, Trigger
from voiced.pipeline.timers import TimerBook
from voiced.pipeline.turn import TraceWriter, TurnRecord
from voiced.pipeline.turn_end import looks_like_full_sentence
from voiced.pipeline.vad import WebRtcVad
from voiced.pipeline.workers import Workers
from voiced.ratelimit import RateLimitedLog
from voiced.settings import Settings

_LOGGER = logging.getLogger(__name__)
RECENT_TURNS = 20
BYTES_PER_MS = PIPELINE_RATE_HZ * 2 // 1000


class Assistant:
    def __init__(
        self, settings: Settings, engines: Engines, sink: AudioSink, bus: EventBus, *,
        wake_mode: bool = True, trace: TraceWriter | None = None,
        extra_intents: list[IntentHandler] | None = None, listener: Ears | None = None,
        executors: Mapping[str, concurrent.futures.Executor] | None = None,
        clock: Callable[[], float] = time.monotonic, state_dir: Path | None = None,
    ) -> None:  # fmt: skip
        """``listener``, ``executors`` (listen/asr/slm/tts) and ``clock`` are seams for
        tests; ``state_dir`` keeps the timers across restarts."""
        if engines.asr is None or engines.tts is None:
            raise VoicedError("the assistant needs the ASR and TTS engines")
        self.settings = settings
        self.engines = engines
        self.sink = sink
        self.bus = bus
        self.wake_mode = wake_mode and (engines.wake is not None or listener is not None)
        self.trace = trace
        self.workers = Workers(**executors) if executors else Workers.create()  # type: ignore[arg-type]  # fmt: skip
        # Everything loaded so far (models, tokenizers, tables) lives for the whole
        # run: moving it out of the collector's reach keeps a full collection from
        # pausing the event loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        listen = settings.listen
        ears = listener or Listener(
            engines.wake, WebRtcVad(listen.vad_aggressiveness),
            QuietGate() if listen.speculate_on_quiet else None,
        )  # fmt: skip
        self.hearing = Hearing(ears, self.workers.listen)
        self.clock = StreamClock(clock)
        self._errors_log = RateLimitedLog(_LOGGER)
        self.controls = Controls(
            volume=settings.audio.volume, now_ms=self.clock.now_ms, state_dir=state_dir,
            stop_speaking=self._stop_speaking,
        )
        self.responder = Responder(
            [*(extra_intents or []), BuiltinIntents()], engines.slm, settings.slm,
            self.controls.view, self.workers.slm,
        )  # fmt: skip
        self.speaker = Speaker(engines.tts, sink, self.workers.tts, lambda: self.volume)
        self._ctx = RunContext(
            asr=engines.asr, asr_executor=self.workers.asr, responder=self.responder,
            speaker=self.speaker, sink=sink, controls=self.controls, clock=self.clock,
            errors_log=self._errors_log,
            first_chunk_max_words=settings.tts.first_chunk_max_words, hold=self._hold,
            speaker_health=self._speaker_health,
        )  # fmt: skip
        self._endpointers = {
            "idle": _endpointer_settings(settings, timeout_ms=None),
            "wake": _endpointer_settings(settings, timeout_ms=listen.no_speech_timeout_ms),
            "follow_up": _endpointer_settings(
                settings, timeout_ms=max(1, listen.follow_up_window_ms)),
        }  # fmt: skip
        self._idle_endpointer = Endpointer(self._endpointers["idle"])
        self._utterance_cap = BYTES_PER_MS * (
            PREROLL_MS + listen.max_speech_ms + listen.no_speech_timeout_ms + 1000)
        self._clock_phrases = (
            ClockPhrases(engines.tts, self.workers.tts, self._errors_log)
            if settings.tts.prepare_clock_replies else None
        )  # fmt: skip
        self._session: Session = Idle()
        self._background: set[asyncio.Task[None]] = set()
        self._asks: set[asyncio.Task[None]] = set()
        self._speaker_ok = True
        self._stopping: TurnRun | None = None
        self._closed = False
        self._next_turn_id = 1
        self.frames_seen = 0
        self.first_frame = asyncio.Event()
        self.recent_turns: deque[TurnRecord] = deque(maxlen=RECENT_TURNS)
        self.on_turn_done: list[Callable[[TurnRecord], None]] = []

    # -- what the outside reads ------------------------------------------------

    def now_ms(self) -> float:
        """ms since stream start: the audio position plus the time since that frame."""
        return self.clock.now_ms()

    @property
    def position_samples(self) -> int:
        return self.clock.position_samples

    @property
    def state(self) -> State:
        return self._session.state

    @property
    def session(self) -> Session:
        return self._session

    @property
    def busy(self) -> bool:
        session = self._session
        return isinstance(session, Responding) or (
            isinstance(session, Muted) and session.playing is not None)  # fmt: skip

    @property
    def volume(self) -> float:
        return self.controls.volume

    @property
    def timers(self) -> TimerBook:
        return self.controls.timers

    def _emit(self, kind: EventType, **data: object) -> None:
        self.bus.publish(Event(kind, dict(data), stream_ms=self.now_ms()))

    def _move(self, session: Session, trigger: Trigger) -> None:
        """The one way the session changes; state-changed when the public state does."""
        before = self._session.state
        self._session = session
        if session.state is not before:
            self._emit(EventType.STATE_CHANGED, state=session.state.value,
                       previous=before.value, trigger=trigger.value)  # fmt: skip

    # -- frames -----------------------------------------------------------

    async def feed(self, frame: AudioFrame) -> None:
        """Take one frame of microphone (or file) audio."""
        self.frames_seen += 1
        if not self.first_frame.is_set():
            self.first_frame.set()
            self._hold(asyncio.create_task(
                prepare_fixed_replies(self.speaker.tts, self.workers.tts, self._errors_log)))
        self.clock.advance(frame.end_sample)
        self.sink.tick(frame.num_samples)
        for label in self.controls.due_alerts():
            self._emit(EventType.TIMER_FIRED, label=label)
        session = self._session
        if isinstance(session, Muted):
            if session.playing is None:
                self._start_announcement()
            return
        listen = self.settings.listen
        speaking = isinstance(session, Responding)
        # Run only the detectors this state needs: idle in wake mode is the state
        # the device spends its life in, so it pays for the wake word alone.
        score_wake = self.wake_mode and not isinstance(session, Listening) and (
            not speaking or listen.barge_in)  # fmt: skip
        detect_speech = (
            isinstance(session, Listening) or (isinstance(session, Idle) and not self.wake_mode)
            or (speaking and listen.barge_in_on_speech)
        )  # fmt: skip
        heard = await self.hearing.hear(frame.pcm, score_wake=score_wake,
                                        detect_speech=detect_speech)  # fmt: skip
        session = self._session  # hearing awaited: a control may have moved it
        if isinstance(session, Responding):
            if heard.wake or (listen.barge_in_on_speech and heard.speech):
                self.barge_in("wake word" if heard.wake else "speech")
                listening = self._session
                if heard.speech and isinstance(listening, Listening):
                    self._hear_in(listening, heard.speech, heard.quiet, frame)
        elif isinstance(session, Idle):
            self.hearing.preroll.append(frame.pcm)
            self._prepare_clock_replies()
            if heard.wake:
                self._start_listening(wake=True)
            elif self._start_announcement():
                pass
            elif not self.wake_mode:
                self._idle_hear(heard.speech, frame)
        elif isinstance(session, Listening):
            self._hear_in(session, heard.speech, heard.quiet, frame)

    def _hear_in(self, listening: Listening, speech: bool, quiet: bool, frame: AudioFrame) -> None:
        listening.append(frame.pcm)
        for event in listening.endpointer.process(speech, frame.duration_ms, quiet=quiet):
            if self._session is not listening:
                return
            self._on_endpoint(listening, event)

    def _prepare_clock_replies(self) -> None:
        now_s = time.time()
        if self._clock_phrases is not None and self._clock_phrases.due(now_s):
            self._hold(asyncio.create_task(self._clock_phrases.prepare(now_s)))

    def _idle_hear(self, speech: bool, frame: AudioFrame) -> None:
        endpointer = self._idle_endpointer
        if endpointer.done:
            endpointer.reset(frame.start_sample)
        for event in endpointer.process(speech, frame.duration_ms):
            if event.type is EndpointEventType.SPEECH_START:
                listening = self._start_listening(wake=False, endpointer=endpointer)
                listening.utterance = self.hearing.take_preroll()
                self._idle_endpointer = Endpointer(self._endpointers["idle"])
                self._on_endpoint(listening, event)

    def _new_turn(self, **fields: object) -> TurnRecord:
        self._next_turn_id += 1
        return TurnRecord(self._next_turn_id - 1, **fields)  # type: ignore[arg-type]

    def _live_outbox(self) -> Outbox:
        return Outbox(self.bus.publish, self.now_ms)

    def _start_listening(
        self, *, wake: bool, endpointer: Endpointer | None = None, follow_up: bool = False,
        trigger: Trigger = Trigger.WAKE,
    ) -> Listening:  # fmt: skip
        turn = self._new_turn()
        outbox = self._live_outbox()
        if wake:
            turn.wake_ms = self.now_ms()
            outbox.emit(EventType.WAKE_WORD_END, turn_id=turn.turn_id,
                        wake_word=self.engines.paths.names.get("wake", ""))  # fmt: skip
            self.hearing.preroll.clear()
        if endpointer is None:
            endpointer = Endpointer(self._endpointers["follow_up" if follow_up else "wake"])
            endpointer.reset(self.position_samples)
        if follow_up:
            outbox.emit(EventType.RUN_START, turn_id=turn.turn_id, follow_up=True)
        else:
            outbox.emit(EventType.RUN_START, turn_id=turn.turn_id)
            outbox.emit(EventType.STT_START, turn_id=turn.turn_id)
        listening = Listening(turn, outbox, endpointer, self._utterance_cap)
        self._move(listening, trigger)
        return listening

    def _on_endpoint(self, listening: Listening, event: EndpointEvent) -> None:
        turn = listening.turn
        kind = event.type
        if kind is EndpointEventType.SPEECH_START:
            turn.speech_start_ms = event.speech_start_ms
            listening.outbox.emit(EventType.STT_VAD_START, turn_id=turn.turn_id)
        elif kind is EndpointEventType.SPECULATIVE_END:
            # Run the turn now, during the silence that may end the utterance,
            # holding its events and effects until the end is committed.
            turn.speech_end_ms = event.speech_end_ms
            listening.drop_speculative()
            run = self._new_run(dataclasses.replace(turn, slots={}), held=True)
            listening.speculative = SpeculativeRun(
                run, bytes(listening.utterance), self._hold, self._on_speculative_transcript
            )  # fmt: skip
        elif kind is EndpointEventType.SPEECH_RESUMED:
            listening.drop_speculative()
        elif kind is EndpointEventType.SPEECH_END:
            turn.speech_end_ms = event.speech_end_ms
            self._commit(listening)
        elif kind is EndpointEventType.TIMEOUT:
            self._end_listening(listening, "no_speech", Idle(), Trigger.NO_SPEECH)

    # -- runs ---------------------------------------------------------------

    def _new_run(
        self, turn: TurnRecord, *, held: bool = False, outbox: Outbox | None = None
    ) -> TurnRun:
        outbox = outbox or Outbox(self.bus.publish, self.now_ms, held=held)
        return TurnRun(self._ctx, turn, outbox, on_done=self._run_done,
                       on_first_audio=self._run_first_audio)  # fmt: skip

    def _on_speculative_transcript(self, run: TurnRun, text: str) -> None:
        """Early commit: a local intent, or a finished sentence, needs no more silence."""
        listening = self._session
        if (
            isinstance(listening, Listening) and listening.speculative is not None
            and listening.speculative.run is run and self.settings.listen.early_commit
            and text and self._looks_complete(text)
        ):  # fmt: skip
            self._commit(listening)

    def _looks_complete(self, text: str) -> bool:
        return self.responder.match_intent(text) is not None or looks_like_full_sentence(text)

    def _commit(self, listening: Listening) -> None:
        """The utterance has ended: commit the speculative run, or start one."""
        turn = listening.turn
        turn.endpoint_ms = self.now_ms()
        speculative, listening.speculative = listening.speculative, None
        if speculative is not None and self._trusted(speculative):
            run = speculative.run
            run.turn.speech_end_ms, run.turn.endpoint_ms = turn.speech_end_ms, turn.endpoint_ms
            run.outbox.emit(EventType.STT_VAD_END, turn_id=turn.turn_id)
            self._move(Responding(run, speculative.task), Trigger.SPEECH_END)
            speculative.commit()
            return
        # No speculative run, it failed, or it heard a cut-off sentence ("living
        # room like..."): transcribe the whole utterance now that it has ended,
        # with a wider window, which is slower but hears such endings better.
        if speculative is not None:
            speculative.discard()
        listening.outbox.emit(EventType.STT_VAD_END, turn_id=turn.turn_id)
        run = self._new_run(turn, outbox=listening.outbox)
        task = asyncio.create_task(
            run.voice(bytes(listening.utterance), accurate=speculative is not None)
        )
        self._move(Responding(run, task), Trigger.SPEECH_END)

    def _trusted(self, speculative: SpeculativeRun) -> bool:
        """A speculative transcript can stand for the whole utterance unless it failed,
        or is known and looks cut off; one still being computed is trusted."""
        if speculative.failed:
            return False
        text = speculative.transcript
        if text is None:
            return True
        return bool(text) and self._looks_complete(text)

    def _run_first_audio(self, run: TurnRun) -> None:
        session = self._session
        if isinstance(session, Responding) and session.run is run and not session.speaking:
            self._move(Responding(run, session.task, speaking=True), Trigger.FIRST_AUDIO)

    def _run_done(self, run: TurnRun) -> None:
        """Every run ends here once: the record is kept, and the session moves on
        if this run was still the session's."""
        self._record(run.turn)
        if run is self._stopping:
            return
        session = self._session
        if isinstance(session, Muted) and session.playing is not None \
                and session.playing.run is run:  # fmt: skip
            self._session = Muted()
        elif isinstance(session, Responding) and session.run is run:
            match = run.match
            ended_talk = match is not None and match.stop_speaking
            if (
                run.turn.outcome == "answered" and run.turn.kind == "voice"
                and self.settings.listen.follow_up_window_ms > 0 and not ended_talk
            ):  # fmt: skip
                self._start_listening(wake=False, follow_up=True, trigger=Trigger.FOLLOW_UP)
            else:
                trigger = Trigger.REPLY_DONE if run.turn.outcome == "answered" else Trigger.CANCEL
                self._move(Idle(), trigger)

    def _end_listening(self, listening: Listening, outcome: str, then: Session,
                       trigger: Trigger) -> None:  # fmt: skip
        """End a turn that is still listening: no run took it over."""
        listening.drop_speculative()
        turn = listening.turn
        turn.outcome, turn.done_ms = outcome, self.now_ms()
        listening.outbox.emit(EventType.RUN_END, turn_id=turn.turn_id, outcome=outcome)
        listening.outbox.close()
        self._move(then, trigger)
        self._record(turn)

    def _record(self, turn: TurnRecord) -> None:
        self.recent_turns.append(turn)
        if self.trace is not None and turn.kind != "say":
            self.trace.write(turn)
        for callback in self.on_turn_done:
            callback(turn)

    def _speaker_health(self, ok: bool) -> None:
        if ok != self._speaker_ok:
            self._speaker_ok = ok
            self._emit(EventType.SPEAKER_RESTORED if ok else EventType.SPEAKER_LOST)

    def _hold(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- ending what is in flight --------------------------------------------

    def _end_all(self, outcome: str, then: Session, trigger: Trigger) -> None:
        """End the session's turn (listening or running) with ``outcome`` and move to
        ``then``. The run's outbox closes with its run-end, so nothing the cancelled
        task still does is heard of."""
        session = self._session
        if isinstance(session, Listening):
            self._end_listening(session, outcome, then, trigger)
            return
        self._move(then, trigger)
        if isinstance(session, Muted):
            session = session.playing or session
        if isinstance(session, Responding):
            self._stop_playback()
            self._stop_run(session, outcome)

    def _stop_run(self, responding: Responding, outcome: str) -> None:
        """End a run from outside (stop, mute, barge-in, close): the session has
        already moved, so the run's end must not move it again."""
        self._stopping = responding.run
        try:
            responding.run.finish(outcome)
        finally:
            self._stopping = None
        responding.task.cancel()
        self._hold(responding.task)

    def _stop_playback(self) -> int:
        """Drop what is queued on the speaker; returns the ms dropped."""
        return self.sink.clear()

    def _stop_speaking(self) -> None:
        self.sink.clear()

    # -- control ------------------------------------------------------------

    def barge_in(self, reason: str) -> None:
        """Stop speaking and generating now, and listen: the next turn starts clean."""
        session = self._session
        if not isinstance(session, Responding):
            return
        dropped_ms = self._stop_playback()
        self._stop_run(session, "barged_in")
        self._emit(EventType.BARGE_IN, reason=reason, dropped_ms=dropped_ms)
        self._start_listening(wake=reason != "speech", trigger=Trigger.BARGE_IN)

    def stop(self) -> None:
        """Stop (API stop): whatever is heard, thought or said ends; nothing more is said."""
        self.controls.clear_announcements()
        if isinstance(self._session, Muted):
            self._end_all("cancelled", Muted(), Trigger.CANCEL)
        else:
            self._end_all("cancelled", Idle(), Trigger.CANCEL)
        self.sink.clear()

    def listen(self) -> None:
        """Start a turn as if the wake word was heard (push to talk); during a reply
        it barges in. Muted, or already listening, it does nothing."""
        session = self._session
        if isinstance(session, Idle):
            self._start_listening(wake=True)
        elif isinstance(session, Responding):
            self.barge_in("listen")

    def set_muted(self, muted: bool) -> None:
        """Mute turns the microphone off: what is being heard or answered ends at once
        (an announcement that is playing goes on, timers still ring)."""
        session = self._session
        if muted and not isinstance(session, Muted):
            keep = None
            if isinstance(session, Responding) and session.run.turn.kind == "say":
                keep = session
            if keep is not None:
                self._move(Muted(playing=keep), Trigger.MUTE)
            else:
                self._end_all("cancelled", Muted(), Trigger.MUTE)
        elif not muted and isinstance(session, Muted):
            self._move(session.playing or Idle(), Trigger.UNMUTE)
            self.hearing.preroll.clear()
            self._idle_endpointer = Endpointer(self._endpointers["idle"])
        self._emit(EventType.MUTED, muted=muted)

    def announce(self, text: str) -> None:
        """Speak ``text`` as soon as the assistant is free (API say)."""
        self.controls.announce(text)

    def _start_announcement(self) -> bool:
        session = self._session
        if not isinstance(session, Idle | Muted) or (
                isinstance(session, Muted) and session.playing is not None):  # fmt: skip
            return False
        text = self.controls.next_announcement()
        if text is None:
            return False
        turn = self._new_turn(kind="say")
        run = self._new_run(turn)
        run.outbox.emit(EventType.RUN_START, turn_id=turn.turn_id, say=True)
        responding = Responding(run, asyncio.create_task(run.say(text)))
        if isinstance(session, Muted):
            self._session = Muted(playing=responding)
        else:
            self._move(responding, Trigger.SAY)
        return True

    async def ask(self, text: str, *, speak: bool) -> TurnRecord:
        """Text in, reply out (API ask); spoken when ``speak``. A spoken ask takes the
        session only when it is idle; an interrupted one still returns its record."""
        turn = self._new_turn(kind="text", transcript=text)
        run = self._new_run(turn)
        if speak:
            if not isinstance(self._session, Idle):
                raise VoicedError("the assistant is busy; ask again when it is idle")
            task = asyncio.create_task(run.text(text, speak=True))
            self._move(Responding(run, task), Trigger.SAY)
        else:
            task = asyncio.create_task(run.text(text, speak=False))
            self._asks.add(task)
            task.add_done_callback(self._asks.discard)
        await asyncio.wait({task})
        return turn

    async def wait_turn(self) -> None:
        """Until the turn in progress (if any) has finished."""
        while True:
            session = self._session
            playing = session if isinstance(session, Responding) else (
                session.playing if isinstance(session, Muted) else None)  # fmt: skip
            if playing is None or playing.task.done():
                return
            await asyncio.wait({playing.task})

    def has_pending_work(self, *, include_timers: bool = True) -> bool:
        """A turn, an utterance, an announcement or (optionally) a timer is unfinished."""
        return (
            self.busy or bool(self.controls.announcements)
            or isinstance(self._session, Listening) or self.sink.is_playing
            or (include_timers and self.controls.timers.pending > 0)
        )  # fmt: skip

    async def close(self) -> None:
        """End everything in flight (speculative runs and asks included), then the threads."""
        if self._closed:
            return
        self._closed = True
        session = self._session
        if isinstance(session, Muted):
            self._end_all("cancelled", Muted(), Trigger.CANCEL)
        elif not isinstance(session, Idle):
            self._end_all("cancelled", Idle(), Trigger.CANCEL)
        for task in list(self._asks):
            task.cancel()
        await asyncio.gather(*self._asks, *self._background, return_exceptions=True)
        self.workers.shutdown()


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
