"""Recognition is pure: matching reads the world and never changes it; the effects
it describes are applied once, by Controls. Timers: named, several, time left,
kept across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voiced.intents.builtin import BuiltinIntents, spoken_remaining
from voiced.intents.effects import CancelTimers, ChangeVolume, SetTimer, StopSpeaking
from voiced.intents.normalize import normalize
from voiced.pipeline.controls import MAX_ANNOUNCEMENTS, Controls
from voiced.pipeline.events import Event, EventType
from voiced.pipeline.outbox import MAX_HELD, Outbox
from voiced.pipeline.timers import TimerBook


class Clock:
    def __init__(self) -> None:
        self.ms = 0.0

    def __call__(self) -> float:
        return self.ms


def match(controls: Controls, text: str):  # type: ignore[no-untyped-def]
    return BuiltinIntents().match(normalize(text), controls.view)


def test_matching_many_times_changes_nothing() -> None:
    controls = Controls(volume=1.0, now_ms=Clock())
    for text in ("Set a timer for ten seconds.", "Turn it down.", "Cancel the timer.", "stop"):
        for _ in range(3):
            assert match(controls, text) is not None
    assert controls.timers.pending == 0
    assert controls.volume == 1.0


def test_effects_are_data_and_apply_once() -> None:
    controls = Controls(volume=1.0, now_ms=Clock())
    found = match(controls, "Turn it down.")
    assert found.effects == (ChangeVolume(-0.2),) and found.slots == {"volume": "0.8"}
    controls.apply(found)
    assert controls.volume == pytest.approx(0.8)
    timer = match(controls, "Set a timer for ten seconds.")
    assert timer.effects == (SetTimer(10, "10 seconds"),)
    controls.apply(timer)
    assert controls.timers.pending == 1
    cancel = match(controls, "Cancel the timer.")
    assert cancel.reply == "Timer cancelled." and cancel.effects == (CancelTimers(None),)
    controls.apply(cancel)
    assert controls.timers.pending == 0
    assert match(controls, "Cancel the timer.").reply == "There is no timer running."
    assert match(controls, "stop").effects == (StopSpeaking(),)


def test_named_timers_several_at_once_and_time_left() -> None:
    clock = Clock()
    controls = Controls(volume=1.0, now_ms=clock)
    pasta = match(controls, "Set a pasta timer for ten minutes.")
    assert pasta.reply == "Pasta timer set for 10 minutes."
    controls.apply(pasta)
    controls.apply(match(controls, "Set a timer for 30 seconds."))
    assert controls.timers.pending == 2
    clock.ms = 10_000.0
    left = match(controls, "How much time is left?")
    assert left.reply == (
        "There are 20 seconds on the 30 seconds timer and 9 minutes and 50 seconds on the "
        "pasta timer left."
    )
    assert match(controls, "How long is left on the pasta timer?").reply == (
        "9 minutes and 50 seconds left.")  # fmt: skip
    cancel = match(controls, "Cancel the pasta timer.")
    assert cancel.reply == "Pasta timer cancelled."
    controls.apply(cancel)
    assert [t.label for t in controls.timers.running()] == ["30 seconds"]
    clock.ms = 40_000.0
    assert controls.due_alerts() == ["30 seconds"]
    assert controls.due_alerts() == [], "each timer fires once"
    alert = controls.next_announcement()
    assert alert is not None and alert.text == "Your 30 seconds timer is done." and alert.alert


@pytest.mark.parametrize(("seconds", "spoken"), [
    (0.2, "1 second"), (45, "45 seconds"), (61, "1 minute and 1 second"),
    (600, "10 minutes"), (754, "12 minutes"), (3600 + 300, "1 hour and 5 minutes"),
])  # fmt: skip
def test_spoken_remaining(seconds: float, spoken: str) -> None:
    assert spoken_remaining(seconds) == spoken


def test_timers_are_kept_in_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    wall = [1000.0]
    book = TimerBook(path, wall_s=lambda: wall[0])
    book.add(60_000.0, "pasta", "pasta", now_ms=0.0)
    book.add(5_000.0, "5 seconds", now_ms=0.0)
    wall[0] = 1030.0  # the service restarts 30 s later, its stream clock at 0 again
    again = TimerBook(path, wall_s=lambda: wall[0])
    assert [(t.label, round(t.due_ms)) for t in again.running()] == [
        ("5 seconds", -25_000), ("pasta", 30_000)]  # fmt: skip
    assert again.due(0.0) == ["5 seconds"], "missed while down: fires at once"
    assert json.loads(path.read_text())["timers"][0]["name"] == "pasta"


def test_an_unreadable_state_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    path.write_text("{not json")
    assert TimerBook(path).pending == 0


def test_a_timer_alert_is_never_dropped_for_a_say() -> None:
    controls = Controls(volume=1.0, now_ms=Clock())
    for index in range(MAX_ANNOUNCEMENTS):
        assert controls.announce(f"say {index}")
    assert not controls.announce("one too many")
    assert controls.announce("Your pasta timer is done.", alert=True)
    texts = [a.text for a in controls.announcements]
    assert "Your pasta timer is done." in texts and len(texts) == MAX_ANNOUNCEMENTS


def test_outbox_holds_until_commit_and_drops_on_discard() -> None:
    published: list[Event] = []
    done: list[str] = []
    held = Outbox(published.append, lambda: 0.0, held=True)
    held.emit(EventType.STT_END, text="hi")
    held.defer(lambda: done.append("remembered"))
    assert published == [] and done == []
    held.commit()
    held.commit()
    assert [e.type for e in published] == [EventType.STT_END] and done == ["remembered"]
    held.emit(EventType.INTENT_START)
    assert len(published) == 2, "after commit events go straight out"
    dropped = Outbox(published.append, lambda: 0.0, held=True)
    dropped.emit(EventType.STT_END, text="never")
    dropped.defer(lambda: done.append("never"))
    dropped.close()
    dropped.commit()
    dropped.emit(EventType.TTS_START)
    assert len(published) == 2 and done == ["remembered"]


def test_outbox_caps_what_it_holds() -> None:
    published: list[Event] = []
    held = Outbox(published.append, lambda: 0.0, held=True)
    for _ in range(MAX_HELD + 10):
        held.emit(EventType.INTENT_PROGRESS)
    held.commit()
    assert len(published) == MAX_HELD


def test_an_outbox_closed_while_it_commits_sends_nothing_more() -> None:
    published: list[Event] = []
    outbox = Outbox(lambda e: (published.append(e), outbox.close()), lambda: 0.0, held=True)
    outbox.emit(EventType.STT_END)
    outbox.emit(EventType.STT_VAD_END)
    outbox.commit()
    assert [e.type for e in published] == [EventType.STT_END]


def test_the_utterance_buffer_has_a_cap() -> None:
    from voiced.pipeline.endpointer import Endpointer
    from voiced.pipeline.session import Listening
    from voiced.pipeline.turn import TurnRecord

    listening = Listening(TurnRecord(1), Outbox(lambda e: None, lambda: 0.0), Endpointer(),
                          max_bytes=640)  # fmt: skip
    for _ in range(10):
        listening.append(bytes(320))
    assert len(listening.utterance) == 640


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("What day is it today?", "day"),
        ("What's the date?", "day"),
        ("What day is it tomorrow?", None),  # the model has the date; the intent says today's
        ("What day was it yesterday?", None),
        ("What day is Christmas this year?", None),
    ],
)
def test_the_day_intent_answers_only_for_today(text: str, intent: str | None) -> None:
    found = match(Controls(volume=1.0, now_ms=Clock()), text)
    assert (found.intent if found else None) == intent
