"""The session and its turns: listening, committing, running and ending them.

The session is one state object at a time (voiced.pipeline.session), and this is
the only code that changes it, through ``move``. A Listening state's endpointer
events start, drop and commit speculative runs; a run's end moves the session
on (to idle, a follow-up or a timer's ring window) unless a control ended it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence

from voiced.audio.format import PIPELINE_RATE_HZ, AudioFrame, ms_to_samples
from voiced.house.arbiter import Contest
from voiced.pipeline.clock import StreamClock
from voiced.pipeline.controls import Announcement, Controls
from voiced.pipeline.endpointer import (
    Endpointer,
    EndpointerSettings,
    EndpointEvent,
    EndpointEventType,
)
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.hearing import PREROLL_MS, Hearing
from voiced.pipeline.outbox import Outbox
from voiced.pipeline.responder import Responder
from voiced.pipeline.run import ANSWERED_ELSEWHERE, RunContext, TurnRun
from voiced.pipeline.session import Idle, Listening, Muted, Responding, Session
from voiced.pipeline.speculative import SpeculativeRun
from voiced.pipeline.state import Trigger
from voiced.pipeline.turn import TurnRecord
from voiced.pipeline.turn_end import looks_like_full_sentence
from voiced.settings import ListenSettings

UNANSWERED = frozenset({"no_speech", "empty_transcript", "ignored"})
BYTES_PER_MS = PIPELINE_RATE_HZ * 2 // 1000
ROOM_TAIL_MS = 300
"""After a reply has drained, the sound card and the room still play its last
~100-300 ms: a follow-up or ring window does not take that for the user."""


class Turns:
    def __init__(
        self, listen: ListenSettings, ctx: RunContext, bus: EventBus, hearing: Hearing, *,
        wake_word: str, record: Callable[[TurnRecord], None],
    ) -> None:  # fmt: skip
        self.listen = listen
        self._ctx = ctx
        self.bus = bus
        self.clock: StreamClock = ctx.clock
        self.hearing = hearing
        self.controls: Controls = ctx.controls
        self.responder: Responder = ctx.responder
        self.sink = ctx.sink
        self._wake_word = wake_word
        self._record_turn = record
        self._hold = ctx.hold
        self._endpointers = {
            "idle": endpointer_settings(listen, timeout_ms=None),
            "wake": endpointer_settings(listen, timeout_ms=listen.no_speech_timeout_ms),
            "ringing": endpointer_settings(listen, timeout_ms=max(1, listen.ring_window_ms)),
            "follow_up": endpointer_settings(listen, timeout_ms=max(1, listen.follow_up_window_ms)),
        }
        self._idle_endpointer: Endpointer | None = None
        self._utterance_cap = BYTES_PER_MS * (
            PREROLL_MS + listen.max_speech_ms + listen.no_speech_timeout_ms + 1000)
        self.session: Session = Idle()
        self.moved_at_ms = 0.0
        self._stopping: TurnRun | None = None
        self._next_turn_id = 1
        self.room_tail_ms = ROOM_TAIL_MS
        """How long a follow-up or ring window stays deaf after a reply (0 when an
        echo canceller takes the tail out)."""

    def now_ms(self) -> float:
        return self.clock.now_ms()

    def reset_idle_endpointer(self) -> None:
        self._idle_endpointer = None

    def _emit(self, kind: EventType, **data: object) -> None:
        self.bus.publish(Event(kind, dict(data), stream_ms=self.now_ms()))

    def move(self, session: Session, trigger: Trigger) -> None:
        """The one way the session changes; state-changed when the public state does."""
        before = self.session.state
        self.session = session
        self.moved_at_ms = self.now_ms()
        if session.state is not before:
            self._emit(EventType.STATE_CHANGED, state=session.state.value,
                       previous=before.value, trigger=trigger.value)  # fmt: skip

    def hear_in(self, listening: Listening, speech: bool, quiet: bool, frame: AudioFrame) -> None:
        if frame.start_sample < listening.deaf_until_sample:
            speech = False  # the room still plays the reply's tail
        listening.append(frame.pcm)
        for event in listening.endpointer.process(speech, frame.duration_ms, quiet=quiet):
            if self.session is not listening:
                return
            self._on_endpoint(listening, event)

    def idle_hear(self, speech: bool, frame: AudioFrame) -> None:
        """No-wake mode while idle: speech starts a turn, which keeps this endpointer."""
        endpointer = self._idle_endpointer
        if endpointer is None or endpointer.done:
            endpointer = self._idle_endpointer = Endpointer(self._endpointers["idle"])
            endpointer.reset(frame.start_sample)  # positions on the stream's clock
        for event in endpointer.process(speech, frame.duration_ms):
            if event.type is EndpointEventType.SPEECH_START:
                listening = self.start_listening(wake=False, endpointer=endpointer)
                listening.utterance = self.hearing.take_preroll()
                self._idle_endpointer = None
                self._on_endpoint(listening, event)

    def new_turn(self, **fields: object) -> TurnRecord:
        self._next_turn_id += 1
        return TurnRecord(self._next_turn_id - 1, **fields)  # type: ignore[arg-type]

    def _live_outbox(self) -> Outbox:
        return Outbox(self.bus.publish, self.now_ms)

    def start_listening(
        self, *, wake: bool, endpointer: Endpointer | None = None, follow_up: bool = False,
        trigger: Trigger = Trigger.WAKE, ringing: Announcement | None = None,
        from_sample: int | None = None,
    ) -> Listening:  # fmt: skip
        """``from_sample``: the utterance began before now (barge-in replays it)."""
        turn = self.new_turn()
        outbox = self._live_outbox()
        if wake:
            turn.wake_ms = self.now_ms()
            outbox.emit(EventType.WAKE_WORD_END, turn_id=turn.turn_id,
                        wake_word=self._wake_word)  # fmt: skip
            self.hearing.preroll.clear()
        follow_up = follow_up or ringing is not None
        if endpointer is None:
            kind = "ringing" if ringing else "follow_up" if follow_up else "wake"
            endpointer = Endpointer(self._endpointers[kind])
            endpointer.reset(self.clock.position_samples if from_sample is None else from_sample)
        if follow_up:
            outbox.emit(EventType.RUN_START, turn_id=turn.turn_id, follow_up=True)
        else:
            outbox.emit(EventType.RUN_START, turn_id=turn.turn_id)
            outbox.emit(EventType.STT_START, turn_id=turn.turn_id)
        listening = Listening(turn, outbox, endpointer, self._utterance_cap, ringing=ringing)
        if follow_up:
            listening.deaf_until_sample = self.clock.position_samples + ms_to_samples(
                self.room_tail_ms
            )
        self.move(listening, trigger)
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
            run = self.new_run(dataclasses.replace(turn, slots={}), held=True)
            run.ringing, run.contest = listening.ringing, listening.contest
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

    def new_run(
        self, turn: TurnRecord, *, held: bool = False, outbox: Outbox | None = None
    ) -> TurnRun:
        outbox = outbox or Outbox(self.bus.publish, self.now_ms, held=held)
        return TurnRun(self._ctx, turn, outbox, on_done=self._run_done,
                       on_first_audio=self._run_first_audio)  # fmt: skip

    def _on_speculative_transcript(self, run: TurnRun, text: str) -> None:
        """Early commit: a local intent, or a finished sentence, needs no more silence."""
        listening = self.session
        if (
            isinstance(listening, Listening) and listening.speculative is not None
            and listening.speculative.run is run and self.listen.early_commit
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
            self.move(Responding(run, speculative.task), Trigger.SPEECH_END)
            speculative.commit()
            return
        # No speculative run, it failed, or it heard a cut-off sentence ("living
        # room like..."): transcribe the whole utterance now that it has ended,
        # with a wider window, which is slower but hears such endings better.
        if speculative is not None:
            speculative.discard()
        listening.outbox.emit(EventType.STT_VAD_END, turn_id=turn.turn_id)
        run = self.new_run(turn, outbox=listening.outbox)
        run.ringing, run.contest = listening.ringing, listening.contest
        task = asyncio.create_task(
            run.voice(bytes(listening.utterance), accurate=speculative is not None)
        )
        self.move(Responding(run, task), Trigger.SPEECH_END)

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
        session = self.session
        if isinstance(session, Responding) and session.run is run and not session.speaking:
            self.move(dataclasses.replace(session, speaking=True), Trigger.FIRST_AUDIO)

    def _run_done(self, run: TurnRun) -> None:
        """Every run ends here once: the record is kept, and the session moves on
        if this run was still the session's."""
        self._record_turn(run.turn)
        if run.ringing is not None and run.turn.outcome in UNANSWERED:
            self.controls.ring_again(run.ringing)
        if run is self._stopping:
            return
        session = self.session
        if isinstance(session, Muted) and session.playing is not None \
                and session.playing.run is run:  # fmt: skip
            self.session = Muted()
        elif isinstance(session, Responding) and session.run is run:
            alert = session.announcement
            if (
                alert is not None and alert.alert and run.turn.outcome == "answered"
                and self.listen.ring_window_ms > 0
            ):  # fmt: skip
                self.start_listening(wake=False, ringing=alert, trigger=Trigger.FOLLOW_UP)
                return
            match = run.match
            ended_talk = match is not None and match.stop_speaking
            if (
                run.turn.outcome == "answered" and run.turn.kind == "voice"
                and self.listen.follow_up_window_ms > 0 and not ended_talk
            ):  # fmt: skip
                self.start_listening(wake=False, follow_up=True, trigger=Trigger.FOLLOW_UP)
            else:
                trigger = Trigger.REPLY_DONE if run.turn.outcome == "answered" else Trigger.CANCEL
                self.move(Idle(), trigger)

    def contest_wake(self, listening: Listening, contest: Contest) -> None:
        """Other devices may have heard this wake word: the turn goes on recording,
        and answers only if it wins (house_verdict)."""
        listening.contest = contest
        if contest.verdict is not None:
            self.house_verdict(contest)

    def house_verdict(self, contest: Contest) -> None:
        """A contest was decided. Lost: the turn ends without a sound, whether it is
        still listening or its run waits for the verdict (it finishes itself)."""
        verdict = contest.verdict
        if verdict is None or verdict.won:
            return
        self._emit(
            EventType.ANSWERED_ELSEWHERE, turn_id=contest.turn_id, winner=verdict.winner,
            level_db=contest.claim.level_db, winner_level_db=verdict.winner_level_db,
        )  # fmt: skip
        session = self.session
        if isinstance(session, Listening) and session.contest is contest:
            self._end_listening(session, ANSWERED_ELSEWHERE, Idle(), Trigger.CANCEL)

    def _end_listening(self, listening: Listening, outcome: str, then: Session,
                       trigger: Trigger) -> None:  # fmt: skip
        """End a turn that is still listening: no run took it over."""
        listening.drop_speculative()
        turn = listening.turn
        turn.outcome, turn.done_ms = outcome, self.now_ms()
        listening.outbox.emit(EventType.RUN_END, turn_id=turn.turn_id, outcome=outcome)
        listening.outbox.close()
        self.move(then, trigger)
        self._record_turn(turn)
        if listening.ringing is not None and outcome in UNANSWERED:
            self.controls.ring_again(listening.ringing)

    def end_all(self, outcome: str, then: Session, trigger: Trigger) -> None:
        """End the session's turn (listening or running) with ``outcome`` and move to
        ``then``. The run's outbox closes with its run-end, so nothing the cancelled
        task still does is heard of."""
        session = self.session
        if isinstance(session, Listening):
            self._end_listening(session, outcome, then, trigger)
            return
        self.move(then, trigger)
        if isinstance(session, Muted):
            session = session.playing or session
        if isinstance(session, Responding):
            self.stop_playback()
            self.stop_run(session, outcome)

    def stop_run(self, responding: Responding, outcome: str) -> None:
        """End a run from outside (stop, mute, barge-in, close): the session has
        already moved, so the run's end must not move it again."""
        self._stopping = responding.run
        try:
            responding.run.finish(outcome)
        finally:
            self._stopping = None
        responding.task.cancel()
        self._hold(responding.task)

    def stop_playback(self) -> int:
        """Drop what is queued on the speaker; returns the ms dropped."""
        return self.sink.clear()

    def barge_in(self, reason: str, *, heard: Sequence[tuple[AudioFrame, bool]] = ()) -> None:
        """Stop speaking and generating now, and listen: the next turn starts clean, or
        with ``heard`` (frames and whether each was speech), the words that stopped it."""
        session = self.session
        if not isinstance(session, Responding):
            return
        dropped_ms = self.stop_playback()
        self.stop_run(session, "barged_in")
        self._emit(EventType.BARGE_IN, reason=reason, dropped_ms=dropped_ms)
        listening = self.start_listening(
            wake=reason != "speech", trigger=Trigger.BARGE_IN,
            from_sample=heard[0][0].start_sample if heard else None,
        )  # fmt: skip
        for frame, speech in heard:
            if self.session is not listening:
                return
            self.hear_in(listening, speech, False, frame)

    def start_announcement(self, *, while_muted: bool = True) -> bool:
        session = self.session
        if not isinstance(session, Idle | Muted) or (
                isinstance(session, Muted) and (session.playing is not None or not while_muted)
        ):  # fmt: skip
            return False
        announcement = self.controls.next_announcement()
        if announcement is None:
            return False
        text = announcement.text
        turn = self.new_turn(kind="say")
        run = self.new_run(turn)
        run.outbox.emit(EventType.RUN_START, turn_id=turn.turn_id, say=True)
        responding = Responding(run, asyncio.create_task(run.say(text)),
                                announcement=announcement)  # fmt: skip
        if isinstance(session, Muted):
            self.session = Muted(playing=responding)
        else:
            self.move(responding, Trigger.SAY)
        return True


def endpointer_settings(listen: ListenSettings, *, timeout_ms: int | None) -> EndpointerSettings:
    return EndpointerSettings(
        speech_start_ms=listen.speech_start_ms,
        speculative_silence_ms=listen.speculative_silence_ms or None,
        silence_end_ms=listen.silence_end_ms,
        max_speech_ms=listen.max_speech_ms,
        timeout_no_speech_ms=timeout_ms,
    )
