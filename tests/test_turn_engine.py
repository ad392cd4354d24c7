"""The turn engine, paced: every command acts exactly once, and stop, mute and
barge-in end everything in flight.

Each test feeds a script at the stream's pace (tests/paced.py), so a 150 ms
transcription started at the first pause is still running while the silence
goes on and the speculative path is taken every time. Counts, not presence.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from tests.paced import (
    FailingTts,
    HangingSink,
    ReopeningSink,
    Script,
    paced_settings,
    run_paced,
)
from voiced.errors import BusyError
from voiced.pipeline.events import EventType
from voiced.pipeline.responder import Responder, Response
from voiced.pipeline.state import TRANSITIONS, State, Trigger
from voiced.pipeline.turn import TurnRecord


def spoken(run: object) -> list[str]:
    return list(run.tts.texts)  # type: ignore[attr-defined]


def test_one_timer_command_sets_one_timer_and_it_rings_once() -> None:
    script = Script().silence(300).say("Set a timer for ten seconds.").silence(1500)
    pending: list[int] = []
    script.do(lambda a: pending.append(a.timers.pending)).silence(10_000)
    run = run_paced(script)
    assert pending == [1]
    (turn, *ring_windows) = run.voice_turns()
    assert all(t.outcome in ("no_speech", "cancelled") and not t.intent for t in ring_windows)
    assert turn.intent == "timer_set"
    assert turn.endpoint_ms is not None and turn.speech_end_ms is not None
    assert turn.endpoint_ms - turn.speech_end_ms < 480, "committed at the first pause"
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert spoken(run).count("Your 10 seconds timer is done.") == 1


def test_set_then_cancel_cancels_the_timer_that_was_set() -> None:
    script = (
        Script().silence(300).say("Set a timer for ten seconds.").silence(1500)
        .say("Cancel the timer.").silence(12_000)
    )  # fmt: skip
    run = run_paced(script)
    replies = [t.reply for t in run.voice_turns()]
    assert replies == ["Timer set for 10 seconds.", "Timer cancelled."]
    assert run.assistant.timers.pending == 0
    assert run.of(EventType.TIMER_FIRED) == []


def test_turn_it_down_lowers_the_volume_one_step() -> None:
    run = run_paced(Script().silence(300).say("Turn it down.").silence(1500))
    assert run.assistant.volume == pytest.approx(0.8)
    assert [t.intent for t in run.voice_turns()] == ["volume_down"]


def test_a_pause_inside_a_sentence_gives_one_stt_end_per_run() -> None:
    script = (
        Script().silence(300).say("What is the capital of").silence(300).say("France?")
        .silence(2000)
    )  # fmt: skip
    run = run_paced(script)
    (turn,) = run.voice_turns()
    assert turn.transcript == "What is the capital of France?"
    ends = run.of(EventType.STT_END)
    assert [e.data["text"] for e in ends] == ["What is the capital of France?"]
    assert len(run.of(EventType.RUN_START)) == len(run.of(EventType.RUN_END)) == 1


def test_a_dropped_speculative_reply_is_not_remembered() -> None:
    script = (
        Script().silence(300).say("What is the capital of").silence(400).say("France?")
        .silence(2500)
    )  # fmt: skip
    run = run_paced(script)
    conversation = run.assistant.responder.conversation
    assert conversation is not None
    assert [q["content"] for q, _ in conversation.turns] == ["What is the capital of France?"]
    assert len(run.of(EventType.INTENT_END)) == 1


@pytest.mark.parametrize("control", ["mute", "stop"])
def test_mute_or_stop_while_transcribing_ends_the_turn(control: str) -> None:
    """The command is being transcribed when the user mutes (or stops): nothing of
    it is said or done, and after mute no event at all until unmute."""

    def act(assistant: object) -> None:
        if control == "mute":
            assistant.set_muted(True)  # type: ignore[attr-defined]
        else:
            assistant.stop()  # type: ignore[attr-defined]

    script = (
        Script().silence(300).say("Set a timer for ten seconds.").silence(100).do(act)
        .silence(12_000)
    )  # fmt: skip
    run = run_paced(script)
    assert run.assistant.timers.pending == 0
    assert spoken(run) == []
    assert run.of(EventType.TTS_START) == [] and run.of(EventType.INTENT_START) == []
    assert [t.outcome for t in run.voice_turns()] == ["cancelled"]
    if control == "mute":
        assert run.after(EventType.MUTED) == []
        assert run.assistant.state is State.MUTED
    else:
        assert run.assistant.state is State.IDLE


def test_mute_while_speaking_says_nothing_more() -> None:
    script = Script().silence(300).say("Tell me a story.").silence(900)
    script.do(lambda a: a.set_muted(True)).silence(3000)
    run = run_paced(script, slm_reply=" ".join(["word"] * 40) + ".")
    assert run.after(EventType.MUTED) == []
    assert not run.sink.is_playing


def test_nothing_heard_while_muted_and_heard_again_after() -> None:
    script = Script().do(lambda a: a.set_muted(True)).silence(300).say("Turn it down.")
    script.silence(1500).do(lambda a: a.set_muted(False)).silence(300).say("Turn it up.")
    script.silence(1500)
    run = run_paced(script)
    assert [t.intent for t in run.voice_turns()] == ["volume_up"]
    assert run.assistant.volume == pytest.approx(1.0)


def test_a_blip_or_a_cough_during_a_reply_does_not_stop_it() -> None:
    """barge_in_on_speech is debounced: 10 ms and 100 ms of "speech" over a reply add
    up to less than barge_in_min_speech_ms (150), so the reply plays to its end."""
    settings = paced_settings(barge_in_on_speech=True, no_speech_timeout_ms=2000)
    script = Script().silence(300).say("Tell me a story.").silence(800)
    script.say("uh", ms=10).silence(600).say("cough", ms=100).silence(12_000)
    run = run_paced(script, settings=settings, slm_reply=" ".join(["word"] * 60) + ".")
    assert run.of(EventType.BARGE_IN) == []
    assert [t.outcome for t in run.voice_turns()] == ["answered"]
    assert run.assistant.state is State.IDLE


def test_speech_over_a_reply_stops_it_and_the_words_before_the_stop_are_kept() -> None:
    """Half a second of speech during a reply stops it once; the new turn hears the
    whole question, from its first frame (before the reply stopped), and answers it."""
    settings = paced_settings(barge_in_on_speech=True)
    script = Script().silence(300).say("Tell me a story.").silence(800)
    script.say("What time is it?", ms=600).silence(3000)
    run = run_paced(script, settings=settings, slm_reply=" ".join(["word"] * 60) + ".")
    (barge_in,) = run.of(EventType.BARGE_IN)
    assert barge_in.data["reason"] == "speech"
    story, question = run.voice_turns()
    assert (story.outcome, question.outcome, question.intent) == ("barged_in", "answered", "time")
    assert question.transcript == "What time is it?"
    assert question.speech_start_ms is not None
    assert question.speech_start_ms < barge_in.stream_ms - 100, "pre-roll: heard from its start"


def test_a_speaker_that_never_drains_ends_the_turn_with_an_error() -> None:
    script = Script().silence(300).say("Turn it up.").silence(12_000).say("Turn it down.")
    script.silence(12_000)
    run = run_paced(script, sink=HangingSink())
    outcomes = [t.outcome for t in run.voice_turns()]
    assert outcomes == ["error", "error"]
    assert run.assistant.state is State.IDLE
    assert len(run.of(EventType.SPEAKER_LOST)) == 1


def test_timers_survive_a_restart(tmp_path: Path) -> None:
    first = run_paced(Script().silence(300).say("Set a timer for one minute.").silence(1500),
                      state_dir=tmp_path)  # fmt: skip
    assert first.assistant.timers.pending == 1
    second = run_paced(Script().silence(61_000), state_dir=tmp_path)
    assert len(second.of(EventType.TIMER_FIRED)) == 1


def test_a_spoken_ask_interrupted_by_the_wake_word_still_answers_its_caller() -> None:
    asks: list[asyncio.Task[TurnRecord]] = []
    script = Script().silence(300)
    script.do(lambda a: asks.append(asyncio.ensure_future(a.ask("Tell me a story.", speak=True))))
    script.silence(800).wake().silence(300).say("What time is it?").silence(1500)
    run = run_paced(script, wake_mode=True, slm_reply=" ".join(["word"] * 60) + ".")
    (ask,) = asks
    assert ask.done() and not ask.cancelled() and ask.exception() is None
    assert ask.result().outcome == "barged_in"
    assert [t.intent for t in run.voice_turns()] == ["time"]


def test_close_ends_a_speculative_run_and_everything_else() -> None:
    script = Script().silence(300).say("What is the capital of").silence(100)
    run = run_paced(script)
    assert run.assistant.session.state is State.IDLE
    assert not run.assistant.has_pending_work(include_timers=False)
    assert [t.outcome for t in run.voice_turns()] == ["cancelled"]
    assert run.of(EventType.STT_END) == [], "the speculative transcript never went out"


def test_no_follow_up_window_after_stop() -> None:
    settings = paced_settings(follow_up_window_ms=3000)
    script = Script().silence(300).wake().silence(200).say("What time is it?").silence(2500)
    script.say("Stop.").silence(1500)
    states: list[State] = []
    script.do(lambda a: states.append(a.state)).silence(300).say("Turn it down.").silence(1500)
    run = run_paced(script, settings=settings, wake_mode=True)
    assert [t.intent for t in run.voice_turns() if t.outcome == "answered"] == ["time", "stop"]
    assert states == [State.IDLE]
    assert run.assistant.volume == 1.0, "heard nothing without the wake word after stop"


def test_every_state_change_is_in_the_table() -> None:
    """The session objects move as voiced.pipeline.state.TRANSITIONS says."""
    settings = paced_settings(barge_in_on_speech=True, follow_up_window_ms=1000)
    script = (
        Script().silence(300).say("Turn it up.").silence(1500).say("Tell me a story.")
        .silence(800).say("uh", ms=400).silence(3000).do(lambda a: a.set_muted(True))
        .silence(300).do(lambda a: a.set_muted(False)).say("What time is").silence(100)
        .do(lambda a: a.stop()).silence(500).do(lambda a: a.listen()).silence(6000)
    )  # fmt: skip
    run = run_paced(script, settings=settings, slm_reply=" ".join(["word"] * 60) + ".")
    changes = [(e.data["previous"], e.data["trigger"], e.data["state"])
               for e in run.of(EventType.STATE_CHANGED)]  # fmt: skip
    assert len(changes) > 10
    for previous, trigger, state in changes:
        assert TRANSITIONS.get((State(previous), Trigger(trigger))) is State(state), changes


def test_a_tts_failure_before_the_first_words_ends_the_turn_and_frees_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model pauses while the first words are synthesised; when that synthesis
    fails the pause is released and the turn ends with an error event (no
    traceback), and the next command is answered."""
    responses: list[Response] = []
    real = Responder.respond

    def keeping(self: Responder, text: str, now_s: float, **kwargs: object) -> Response:
        responses.append(real(self, text, now_s, **kwargs))  # type: ignore[arg-type]
        return responses[-1]

    monkeypatch.setattr(Responder, "respond", keeping)
    script = Script().silence(300).say("Tell me a story.").silence(3000)
    run = run_paced(script, tts=FailingTts(), slm_reply=" ".join(["word"] * 30) + ".")
    (turn,) = run.voice_turns()
    assert turn.outcome == "error" and "synthesis failed" in (turn.error or "")
    assert [e.data["code"] for e in run.of(EventType.ERROR)] == ["engine"]
    assert responses[0].proceed is not None and responses[0].proceed.is_set()
    assert run.assistant.state is State.IDLE


def _alerts(run: object) -> int:
    return spoken(run).count("Your 2 seconds timer is done.")


RINGING = paced_settings(alert_rings=3)


def test_a_ringing_timer_stops_on_stop_without_the_wake_word() -> None:
    script = Script().silence(300).wake().silence(200).say("Set a timer for two seconds.")
    script.silence(3500).say("Stop.").silence(20_000)
    run = run_paced(script, wake_mode=True, settings=RINGING)
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert _alerts(run) == 1
    assert [t.intent for t in run.voice_turns() if t.outcome == "answered"] == [
        "timer_set", "stop"]  # fmt: skip


def test_an_unanswered_alert_rings_three_times_and_other_talk_is_not_a_command() -> None:
    script = Script().silence(300).wake().silence(200).say("Set a timer for two seconds.")
    script.silence(3500).say("Turn it down.").silence(30_000)
    run = run_paced(script, wake_mode=True, settings=RINGING)
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert _alerts(run) == 3
    assert run.assistant.volume == 1.0, "talk near a ringing timer is not a command"
    assert not run.assistant.has_pending_work()


def test_a_timer_rings_while_muted() -> None:
    script = Script().silence(300).say("Set a timer for two seconds.").silence(1000)
    script.do(lambda a: a.set_muted(True)).silence(6000)
    run = run_paced(script)
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert _alerts(run) == 1
    assert run.assistant.state is State.MUTED


def test_the_follow_up_window_does_not_hear_the_reply_tail() -> None:
    """The reply has drained from the queue, but the room still plays its last
    words: a follow-up window opening then does not take them for the user."""
    settings = paced_settings(follow_up_window_ms=3000)
    script = Script().silence(300).wake().silence(200).say("What time is it?").silence(620)
    script.say("AM.", ms=250).silence(4000)
    run = run_paced(script, settings=settings, wake_mode=True)
    assert [t.transcript for t in run.voice_turns() if t.transcript] == ["What time is it?"]


def test_an_ask_during_a_voice_turn_is_refused_not_interleaved() -> None:
    asks: list[asyncio.Task[TurnRecord]] = []

    def ask(assistant: object) -> None:
        asks.append(asyncio.ensure_future(assistant.ask("Tell me a joke.", speak=False)))  # type: ignore[attr-defined]

    script = Script().silence(300).say("What is the capital of", ms=600).do(ask)
    script.say("France?").silence(1500).do(ask).silence(500)
    run = run_paced(script)
    busy, answered = asks
    assert isinstance(busy.exception(), BusyError)
    assert answered.result().outcome == "answered"
    conversation = run.assistant.responder.conversation
    assert conversation is not None
    assert [q["content"] for q, _ in conversation.turns] == [
        "What is the capital of France?", "Tell me a joke."]  # fmt: skip


def test_a_breath_after_set_a_timer_does_not_end_the_command() -> None:
    script = Script().silence(300).say("Set a timer.").silence(350).say("For ten seconds.")
    script.silence(1500)
    run = run_paced(script)
    turns = [t for t in run.voice_turns() if t.transcript]
    assert [t.transcript for t in turns] == ["Set a timer. For ten seconds."]
    assert [t.intent for t in turns] == ["timer_set"]
    assert run.assistant.timers.pending == 1


def test_with_announce_while_muted_off_an_alert_waits_for_unmute() -> None:
    base = paced_settings()
    settings = dataclasses.replace(
        base, audio=dataclasses.replace(base.audio, announce_while_muted=False))
    script = Script().silence(300).say("Set a timer for two seconds.").silence(1000)
    script.do(lambda a: a.set_muted(True)).silence(6000)
    script.do(lambda a: a.set_muted(False)).silence(3000)
    run = run_paced(script, settings=settings)
    fired = run.of(EventType.TIMER_FIRED)
    assert len(fired) == 1
    unmuted = next(e for e in run.of(EventType.MUTED) if e.data["muted"] is False)
    starts = [e for e in run.of(EventType.TTS_START) if e.stream_ms > fired[0].stream_ms]
    assert starts and all(e.stream_ms >= unmuted.stream_ms for e in starts)
    assert _alerts(run) >= 1


def test_a_lost_speaker_is_reopened_with_backoff_and_restored() -> None:
    sink = ReopeningSink(works_at=2)
    script = Script().silence(300).say("Turn it up.").silence(8000).say("Turn it down.")
    script.silence(3000)
    run = run_paced(script, sink=sink)
    assert [t.outcome for t in run.voice_turns()] == ["error", "answered"]
    assert sink.reopens == 2
    kinds = [e.type for e in run.events
             if e.type in (EventType.SPEAKER_LOST, EventType.SPEAKER_RESTORED)]  # fmt: skip
    assert kinds == [EventType.SPEAKER_LOST, EventType.SPEAKER_RESTORED]


def test_the_watchdog_progress_freezes_while_a_state_is_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A turn stuck in one busy state stops the watchdog's progress even though
    microphone frames still arrive."""
    import voiced.pipeline.assistant as assistant_module

    monkeypatch.setattr(assistant_module, "STALL_MS", 3000.0)
    progress: list[int] = []
    script = Script().silence(300).say("Tell me a story.").silence(1000)
    script.do(lambda a: progress.append(a.watchdog_progress())).silence(4000)
    script.do(lambda a: progress.append(a.watchdog_progress())).silence(1000)
    script.do(lambda a: progress.append(a.watchdog_progress()))
    run_paced(script, slm_ms=600_000)  # the model never answers
    first, stuck, still = progress
    assert stuck > first and still == stuck


def test_by_default_an_alert_is_said_once() -> None:
    script = Script().silence(300).say("Set a timer for two seconds.").silence(20_000)
    run = run_paced(script)
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert _alerts(run) == 1


def test_turn_times_are_on_the_stream_clock_for_every_turn() -> None:
    """The second no-wake utterance's speech start is where it is in the stream."""
    script = Script().silence(300).say("Turn it up.").silence(2000).say("Turn it down.")
    script.silence(1500)
    run = run_paced(script)
    first, second = (t for t in run.voice_turns() if t.intent)
    assert first.speech_start_ms is not None and second.speech_start_ms is not None
    assert first.speech_start_ms == pytest.approx(300, abs=20)
    second_start = 300 + 200 + 120 * 3 + 2000
    assert second.speech_start_ms == pytest.approx(second_start, abs=20)
