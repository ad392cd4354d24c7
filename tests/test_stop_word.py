"""A second word beside the wake word ([[wake.words]]), with its own action: a stop
word ends a reply, a ringing timer or a turn without the wake word; an event word
only tells hooks and MQTT. Paced with scripted engines (tests/paced.py); the real
models hear the words in tests/test_wake.py."""

from __future__ import annotations

import dataclasses

from tests.paced import Script, paced_settings, run_paced
from voiced.pipeline.events import EventType
from voiced.pipeline.state import State
from voiced.settings import Settings, WakeWordSettings

LONG_REPLY = " ".join(["The dragon flew over the hills and far away."] * 6)


def with_words(*words: WakeWordSettings, **listen: object) -> Settings:
    base = paced_settings(**listen)
    return dataclasses.replace(base, wake=dataclasses.replace(base.wake, words=words))


STOP_WORD = with_words(WakeWordSettings("alexa", "stop"))


def reply_turns(run: object) -> list[str]:
    return [t.outcome for t in run.voice_turns()]  # type: ignore[attr-defined]


def test_the_stop_word_ends_a_reply_and_nothing_more_is_said() -> None:
    script = Script().silence(300).wake().silence(200).say("Tell me a long story.")
    script.silence(2500).stop_word().silence(8000)
    run = run_paced(script, wake_mode=True, settings=STOP_WORD, slm_reply=LONG_REPLY)
    assert reply_turns(run) == ["cancelled"]
    assert len(run.of(EventType.WORD_HEARD)) == 1
    assert run.of(EventType.WORD_HEARD)[0].data == {"word": "open:alexa", "action": "stop"}
    assert run.of(EventType.BARGE_IN) == [], "stop is not a barge-in: nothing is listened to"
    ended = run.after(EventType.WORD_HEARD)
    assert [e for e in ended if e.type is EventType.PLAYBACK_START] == []
    assert run.assistant.state is State.IDLE


def test_the_stop_word_works_with_barge_in_off_and_the_wake_word_then_does_not_cut_in() -> None:
    settings = with_words(WakeWordSettings("alexa", "stop"), barge_in=False)
    script = Script().silence(300).wake().silence(200).say("Tell me a long story.")
    script.silence(2000).wake().silence(1500).stop_word().silence(8000)
    run = run_paced(script, wake_mode=True, settings=settings, slm_reply=LONG_REPLY)
    assert reply_turns(run) == ["cancelled"], "the second wake word did not barge in"
    assert run.of(EventType.BARGE_IN) == []
    assert len(run.of(EventType.WORD_HEARD)) == 1


def test_the_stop_word_silences_a_ringing_timer() -> None:
    settings = with_words(WakeWordSettings("alexa", "stop"), alert_rings=3)
    script = Script().silence(300).wake().silence(200).say("Set a timer for two seconds.")
    script.silence(3300).stop_word().silence(25_000)
    run = run_paced(script, wake_mode=True, settings=settings)
    assert len(run.of(EventType.TIMER_FIRED)) == 1
    assert list(run.tts.texts).count("Your 2 seconds timer is done.") == 1
    assert not run.assistant.has_pending_work()


def test_the_stop_word_ends_a_turn_that_is_listening() -> None:
    script = Script().silence(300).wake().silence(300).stop_word().silence(6000)
    run = run_paced(script, wake_mode=True, settings=STOP_WORD)
    assert reply_turns(run) == ["cancelled"]
    assert run.asr.calls == [], "nothing was transcribed"


def test_the_stop_word_when_idle_only_tells() -> None:
    script = Script().silence(500).stop_word().silence(3000)
    run = run_paced(script, wake_mode=True, settings=STOP_WORD)
    assert run.turns == []
    assert len(run.of(EventType.WORD_HEARD)) == 1
    assert run.assistant.state is State.IDLE


def test_an_event_word_tells_and_does_not_stop_the_reply() -> None:
    settings = with_words(WakeWordSettings("alexa", "event"))
    script = Script().silence(300).wake().silence(200).say("Tell me a long story.")
    script.silence(2500).stop_word().silence(12_000)
    run = run_paced(script, wake_mode=True, settings=settings, slm_reply=LONG_REPLY)
    assert reply_turns(run) == ["answered"]
    assert [e.data for e in run.of(EventType.WORD_HEARD)] == [
        {"word": "open:alexa", "action": "event"}]  # fmt: skip


def test_without_a_stop_word_the_word_is_not_scored_while_listening() -> None:
    """The stop word's frame comes while listening: with no [[wake.words]] it is the
    wake word's cost alone, and nothing is heard."""
    script = Script().silence(300).wake().silence(300).stop_word().silence(6000)
    run = run_paced(script, wake_mode=True, settings=paced_settings())
    assert run.of(EventType.WORD_HEARD) == []
    assert reply_turns(run) == ["no_speech"]


def test_metrics_count_words_and_wakes_during_a_reply_apart() -> None:
    """A paced session: one wake word over a reply (a barge-in), one stop word."""
    from voiced.control.metrics import Metrics

    metrics = Metrics()
    script = Script().silence(300).wake().silence(200).say("Tell me a long story.")
    script.silence(2000).wake().silence(300).say("What time is it?").silence(1500)
    script.stop_word().silence(3000)
    run = run_paced(script, wake_mode=True, settings=STOP_WORD, slm_reply=LONG_REPLY)
    for event in run.events:
        metrics.on_event(event)
    text = metrics.render()
    assert "voiced_wake_detections_total 2" in text
    assert "voiced_wake_during_reply_total 1" in text
    assert 'voiced_words_heard_total{action="stop"} 1' in text
