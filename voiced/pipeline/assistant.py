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
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from voiced.audio.format import PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.sinks import AudioSink
from voiced.engines.loader import Engines
from voiced.engines.wake_names import STOP
from voiced.errors import BusyError, VoicedError
from voiced.house.arbiter import HouseArbiter
from voiced.house.loudness import LoudnessMeter
from voiced.intents.base import IntentHandler
from voiced.intents.builtin import BuiltinIntents
from voiced.pipeline.barge_in import SpeechOverReply
from voiced.pipeline.clock import StreamClock
from voiced.pipeline.clock_phrases import ClockPhrases, prepare_fixed_replies
from voiced.pipeline.controls import Controls
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.hearing import Ears, Hearing
from voiced.pipeline.listener import Heard, Listener
from voiced.pipeline.mic_path import build_mic_path, counts_as_speech
from voiced.pipeline.quiet import QuietGate
from voiced.pipeline.remote import RemoteTurns
from voiced.pipeline.responder import Responder
from voiced.pipeline.run import RunContext
from voiced.pipeline.session import Idle, Listening, Muted, Responding, Session
from voiced.pipeline.speaker import Speaker
from voiced.pipeline.speaker_watch import SpeakerWatch
from voiced.pipeline.state import State, Trigger
from voiced.pipeline.timers import TimerBook
from voiced.pipeline.turn import TraceWriter, TurnRecord
from voiced.pipeline.turns import ROOM_TAIL_MS, Turns
from voiced.pipeline.vad import WebRtcVad
from voiced.pipeline.workers import Workers
from voiced.ratelimit import RateLimitedLog
from voiced.settings import Settings

_LOGGER = logging.getLogger(__name__)
RECENT_TURNS = 20
STALL_MS = 5 * 60_000.0
"""No turn stays in one busy state this long (the longest utterance, reply and
drain are bounded well below it): a session that has, is stuck."""


class Assistant:
    def __init__(
        self, settings: Settings, engines: Engines, sink: AudioSink, bus: EventBus, *,
        wake_mode: bool = True, trace: TraceWriter | None = None,
        extra_intents: list[IntentHandler] | None = None, listener: Ears | None = None,
        executors: Mapping[str, concurrent.futures.Executor] | None = None,
        clock: Callable[[], float] = time.monotonic, state_dir: Path | None = None,
        house: HouseArbiter | None = None, microphone: str | None = None,
    ) -> None:  # fmt: skip
        """``listener``, ``executors`` (listen/asr/slm/tts) and ``clock`` are seams for
        tests; ``state_dir`` keeps the timers across restarts; ``house`` agrees with
        the other devices which one answers a wake word (voiced.house);
        ``microphone`` names the input when it is a sound card (its frames carry
        capture times, so a sound card's echo can be cancelled; None: a file)."""
        if engines.asr is None or engines.tts is None:
            raise VoicedError("the assistant needs the ASR and TTS engines")
        self.settings = settings
        self.engines = engines
        self.sink = sink
        self.bus = bus
        self.wake_mode = wake_mode and (engines.wake is not None or listener is not None)
        self._stop_word = any(word.action == STOP for word in settings.wake.words)
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
            LoudnessMeter() if house is not None else None,
        )  # fmt: skip
        self.hearing = Hearing(ears, self.workers.listen)
        self.mic_path = build_mic_path(settings.audio, sink, self.workers.listen,
                                       microphone=microphone)  # fmt: skip
        self._over_reply = SpeechOverReply(listen.barge_in_min_speech_ms)
        self.clock = StreamClock(clock)
        self._errors_log = RateLimitedLog(_LOGGER)
        self.controls = Controls(
            volume=settings.audio.volume, now_ms=self.clock.now_ms, state_dir=state_dir,
            stop_speaking=self._stop_speaking, alert_rings=listen.alert_rings,
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
            speaker_health=self._speaker_health, drain_grace_ms=settings.audio.drain_grace_ms,
        )  # fmt: skip
        self._clock_phrases = (
            ClockPhrases(engines.tts, self.workers.tts, self._errors_log)
            if settings.tts.prepare_clock_replies else None
        )  # fmt: skip
        self.speaker_watch = SpeakerWatch(sink, self.clock, self.workers.tts, self._emit_plain,
                                          self._hold, self._errors_log)  # fmt: skip
        self.recent_turns: deque[TurnRecord] = deque(maxlen=RECENT_TURNS)
        self.on_turn_done: list[Callable[[TurnRecord], None]] = []
        self.turns = Turns(
            listen, self._ctx, bus, self.hearing,
            wake_word=engines.paths.names.get("wake", ""), record=self._record,
        )  # fmt: skip
        self.house = house
        if house is not None:
            self.on_turn_done.append(house.turn_done)
        self._background: set[asyncio.Task[None]] = set()
        self._asks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.frames_seen = 0
        self._stalled_at_frames: int | None = None
        self.first_frame = asyncio.Event()
        self.remote: RemoteTurns | None = None
        """A Home Assistant satellite link: while engaged, the wake word starts its turn."""

    # -- what the outside reads ------------------------------------------------

    def now_ms(self) -> float:
        """ms since stream start: the audio position plus the time since that frame."""
        return self.clock.now_ms()

    @property
    def position_samples(self) -> int:
        return self.clock.position_samples

    @property
    def state(self) -> State:
        return self.turns.session.state

    @property
    def session(self) -> Session:
        return self.turns.session

    def state_age_ms(self) -> float:
        """How long the session has been in its present state (stream ms)."""
        return self.now_ms() - self.turns.moved_at_ms

    @property
    def stalled(self) -> bool:
        """A busy state that has not moved for longer than any turn can take: for the
        watchdog, which must not stay happy only because microphone frames arrive."""
        return self.state not in (State.IDLE, State.MUTED) and self.state_age_ms() > STALL_MS

    def watchdog_progress(self) -> int:
        """For the systemd watchdog: the frame count, frozen while the session is
        stalled, so pings stop for a stuck turn as they do for a silent microphone."""
        if self.stalled:
            if self._stalled_at_frames is None:
                self._stalled_at_frames = self.frames_seen
                _LOGGER.error("the session has been %s for %.0f s; withholding watchdog pings",
                              self.state.value, self.state_age_ms() / 1000.0)  # fmt: skip
            return self._stalled_at_frames
        self._stalled_at_frames = None
        return self.frames_seen

    def echo_status(self) -> dict[str, object]:
        """Who cancels the echo and what ours has measured (delay, residual)."""
        return self.mic_path.status()

    @property
    def busy(self) -> bool:
        session = self.turns.session
        return isinstance(session, Responding) or (
            isinstance(session, Muted) and session.playing is not None)  # fmt: skip

    @property
    def volume(self) -> float:
        return self.controls.volume

    @property
    def timers(self) -> TimerBook:
        return self.controls.timers

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
        if self.house is not None:
            for contest in self.house.tick(self.now_ms()):
                self.turns.house_verdict(contest)
        for label in self.controls.due_alerts():
            self.bus.publish(Event(EventType.TIMER_FIRED, {"label": label}, self.now_ms()))
        session = self.turns.session
        if isinstance(session, Muted):
            if session.playing is None:
                self.turns.start_announcement(
                    while_muted=self.settings.audio.announce_while_muted)
            return
        remote = self.remote
        if remote is not None and remote.engaged and self.wake_mode and isinstance(session, Idle):
            await self._feed_remote(remote, frame)
            return
        listen = self.settings.listen
        speaking = isinstance(session, Responding)
        # Run only the detectors this state needs: idle in wake mode is the state
        # the device spends its life in, so it pays for the wake word alone. A stop
        # word is for the moments something is going on, so it is heard in them all.
        score_wake = self.wake_mode and (
            self._stop_word or (not isinstance(session, Listening)
                                and (not speaking or listen.barge_in)))  # fmt: skip
        detect_speech = (
            isinstance(session, Listening) or (isinstance(session, Idle) and not self.wake_mode)
            or (speaking and listen.barge_in_on_speech)
        )  # fmt: skip
        frame, clean = await self.mic_path.clean(frame)
        # A converged canceller takes the reply's tail out: no deaf follow-up window.
        self.turns.room_tail_ms = 0 if self.mic_path.cancels_echo else ROOM_TAIL_MS
        heard = await self.hearing.hear(frame.pcm, score_wake=score_wake,
                                        detect_speech=detect_speech)  # fmt: skip
        session = self.turns.session  # hearing awaited: a control may have moved it
        if heard.words:
            self._words_heard(heard)
            if heard.has(STOP):
                self.stop()
                return
        if isinstance(session, Responding):
            user_speech = counts_as_speech(heard.speech, clean, over_reply=True)
            self._hear_over_reply(frame, heard, user_speech)
            return
        speech = counts_as_speech(heard.speech, clean, over_reply=False)
        self._over_reply.reset()
        if isinstance(session, Idle):
            self.hearing.preroll.append(frame.pcm)
            self._prepare_clock_replies()
            if heard.wake:
                self._contest(self.turns.start_listening(wake=True), heard)
            elif not self.turns.start_announcement() and not self.wake_mode:
                self.turns.idle_hear(counts_as_speech(heard.speech, clean, over_reply=False,
                                                      idle=True), frame)  # fmt: skip
        elif isinstance(session, Listening):
            self.turns.hear_in(session, speech, heard.quiet, frame)

    def _hear_over_reply(self, frame: AudioFrame, heard: Heard, speech: bool) -> None:
        """During a reply: the wake word stops it at once (with listen.barge_in; it is
        scored over replies for a stop word too); speech once it has lasted
        (SpeechOverReply), and the new turn starts with the words heard meanwhile."""
        if heard.wake and self.settings.listen.barge_in:
            self.turns.barge_in("wake word")
            self._over_reply.reset()
            listening = self.turns.session
            if isinstance(listening, Listening):
                self._contest(listening, heard)
            return
        if not self.settings.listen.barge_in_on_speech:
            return
        if self._over_reply.hear(frame, speech):
            self.turns.barge_in("speech", heard=list(self._over_reply.frames))
            self._over_reply.reset()

    def _contest(self, listening: Listening, heard: Heard) -> None:
        if self.house is not None:
            contest = self.house.open(listening.turn.turn_id, heard.wake_level_db, self.now_ms())
            self.turns.contest_wake(listening, contest)

    def _words_heard(self, heard: Heard) -> None:
        for word in heard.words:
            self.bus.publish(Event(EventType.WORD_HEARD,
                                   {"word": word.word, "action": word.action}, self.now_ms()))

    async def _feed_remote(self, remote: RemoteTurns, frame: AudioFrame) -> None:
        """Home Assistant runs the turns: the wake word starts one there, the microphone
        streams to it; voiced's own announcements (timer alerts) play in between."""
        if not remote.busy and self.turns.start_announcement():
            return
        barge_in = not remote.busy or self.settings.listen.barge_in
        score_wake = self._stop_word or (not remote.streaming and barge_in)
        heard = await self.hearing.hear(frame.pcm, score_wake=score_wake, detect_speech=False)
        if heard.words:
            self._words_heard(heard)
            if heard.has(STOP):
                remote.stop()
                self.stop()
                return
        if heard.wake:
            remote.woke(tuple(str(w).split(":", 1)[-1] for w in
                              getattr(self.engines.wake, "fired", ())))  # fmt: skip
        remote.hear(frame.pcm)

    def _prepare_clock_replies(self) -> None:
        now_s = time.time()
        if self._clock_phrases is not None and self._clock_phrases.due(now_s):
            self._hold(asyncio.create_task(self._clock_phrases.prepare(now_s)))

    # -- helpers the runs are given ------------------------------------------

    def _hold(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _record(self, turn: TurnRecord) -> None:
        self.recent_turns.append(turn)
        if self.trace is not None and turn.kind != "say":
            self.trace.write(turn)
        for callback in self.on_turn_done:
            callback(turn)

    def _speaker_health(self, ok: bool) -> None:
        self.speaker_watch.report(ok)

    def _emit_plain(self, kind: EventType) -> None:
        self.bus.publish(Event(kind, stream_ms=self.now_ms()))

    def _stop_speaking(self) -> None:
        self.sink.clear()

    # -- control ------------------------------------------------------------

    def barge_in(self, reason: str) -> None:
        """Stop speaking and generating now, and listen: the next turn starts clean."""
        self.turns.barge_in(reason)

    def stop(self) -> None:
        """Stop (API stop): whatever is heard, thought or said ends; nothing more is said."""
        self.controls.clear_announcements()
        if isinstance(self.turns.session, Muted):
            self.turns.end_all("cancelled", Muted(), Trigger.CANCEL)
        else:
            self.turns.end_all("cancelled", Idle(), Trigger.CANCEL)
        self.sink.clear()

    def listen(self) -> None:
        """Start a turn as if the wake word was heard (push to talk); during a reply
        it barges in. Muted, or already listening, it does nothing."""
        session = self.turns.session
        if isinstance(session, Idle):
            self.turns.start_listening(wake=True)
        elif isinstance(session, Responding):
            self.turns.barge_in("listen")

    def set_muted(self, muted: bool) -> None:
        """Mute turns the microphone off: what is being heard or answered ends at once
        (an announcement that is playing goes on, timers still ring)."""
        session = self.turns.session
        if muted and not isinstance(session, Muted):
            keep = None
            if (
                isinstance(session, Responding) and session.run.turn.kind == "say"
                and self.settings.audio.announce_while_muted
            ):  # fmt: skip
                keep = session
            if keep is not None:
                self.turns.move(Muted(playing=keep), Trigger.MUTE)
            else:
                self.turns.end_all("cancelled", Muted(), Trigger.MUTE)
        elif not muted and isinstance(session, Muted):
            self.turns.move(session.playing or Idle(), Trigger.UNMUTE)
            self.hearing.preroll.clear()
            self.turns.reset_idle_endpointer()
        self.bus.publish(Event(EventType.MUTED, {"muted": muted}, self.now_ms()))

    def announce(self, text: str) -> None:
        """Speak ``text`` as soon as the assistant is free (API say)."""
        self.controls.announce(text)

    async def ask(self, text: str, *, speak: bool) -> TurnRecord:
        """Text in, reply out (API ask); spoken when ``speak``. Refused (BusyError)
        while a voice turn is in flight; a spoken ask needs the session idle. An
        interrupted ask still returns its record."""
        session = self.turns.session
        if isinstance(session, Listening | Responding) or (speak and not isinstance(session, Idle)):
            # A voice turn in flight has the conversation: an ask beside it would
            # interleave with its memory (and a spoken one with its sound).
            raise BusyError("a turn is in progress; ask again when it is over",
                            fix="retry once the state is idle")  # fmt: skip
        turn = self.turns.new_turn(kind="text", transcript=text)
        run = self.turns.new_run(turn)
        if speak:
            task = asyncio.create_task(run.text(text, speak=True))
            self.turns.move(Responding(run, task), Trigger.SAY)
        else:
            task = asyncio.create_task(run.text(text, speak=False))
            self._asks.add(task)
            task.add_done_callback(self._asks.discard)
        await asyncio.wait({task})
        return turn

    async def wait_turn(self) -> None:
        """Until the turn in progress (if any) has finished."""
        while True:
            session = self.turns.session
            playing = session if isinstance(session, Responding) else (
                session.playing if isinstance(session, Muted) else None)  # fmt: skip
            if playing is None or playing.task.done():
                return
            await asyncio.wait({playing.task})

    def has_pending_work(self, *, include_timers: bool = True) -> bool:
        """A turn, an utterance, an announcement or (optionally) a timer is unfinished."""
        return (
            self.busy or bool(self.controls.announcements)
            or isinstance(self.turns.session, Listening) or self.sink.is_playing
            or (include_timers and self.controls.timers.pending > 0)
        )  # fmt: skip

    async def close(self) -> None:
        """End everything in flight (speculative runs and asks included), then the threads."""
        if self._closed:
            return
        self._closed = True
        session = self.turns.session
        if isinstance(session, Muted):
            self.turns.end_all("cancelled", Muted(), Trigger.CANCEL)
        elif not isinstance(session, Idle):
            self.turns.end_all("cancelled", Idle(), Trigger.CANCEL)
        for task in list(self._asks):
            task.cancel()
        await asyncio.gather(*self._asks, *self._background, return_exceptions=True)
        self.workers.shutdown()


__all__ = ["PIPELINE_RATE_HZ", "Assistant"]
