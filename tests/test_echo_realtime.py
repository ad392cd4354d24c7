"""Echo in the room, end to end: the real pipeline, realtime, in a simulated room.

The replies play back into the microphone through the room (voiced.audio.room);
the echo canceller (WebRTC AEC3) takes them out. With barge_in_on_speech on, the
user talks over three long replies and each interruption is answered once, and
replies nobody talks over are never cut by their own echo. Counts, no timings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.pipeline_harness import ANNOUNCEMENTS, PipelineRun, run_pipeline, voice_turns
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventType
from voiced.settings import Settings, SlmSettings, replace_section
from voiced.speech_synth import compose

STORY_S = 10.0
"""Into the first story, the canceller has found the room and converged (about 6 s
of playback): only then does speech over a reply stop it."""
LATER_STORY_S = 5.0
VOLUME = 0.5
"""The assistant at half volume: its echo 6 dB under the user. At full volume the
words spoken while the reply still plays come through AEC3's double-talk
suppression too damaged for Whisper one time in three ("The time is it."; see
README, Echo: double talk)."""


def _talking_over(tts: PiperTts) -> bytes:
    parts: list[str | float] = []
    for story, wait_s, command in (
        ("a brave dragon", STORY_S, "What time is it?"),
        ("a clever fox", LATER_STORY_S, "What is the time now?"),
        ("a lonely robot", LATER_STORY_S, "What time is it?"),
    ):
        parts += [0.5, "Hey Jarvis.", 0.3, f"Tell me a long story about {story}.", wait_s,
                  command, 4.0]  # fmt: skip
    return compose(tts, parts)


def test_talking_over_three_replies_gets_each_interruption_answered_once(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    settings = dataclasses.replace(Settings(), slm=SlmSettings(max_reply_tokens=160))
    settings = replace_section(settings, "listen", barge_in_on_speech=True)
    settings = replace_section(settings, "audio", volume=VOLUME)
    run = run_pipeline(engines, settings, _talking_over(tts), tmp_path, wake_mode=True,
                       realtime=True, room="kitchen")  # fmt: skip
    barge_ins = [e for e in run.events if e.type is EventType.BARGE_IN]
    assert [e.data["reason"] for e in barge_ins] == ["speech"] * 3, _outline(run)
    turns = voice_turns(run)
    assert [t.outcome for t in turns] == ["barged_in", "answered"] * 3, _outline(run)
    assert [t.intent for t in turns[1::2]] == ["time"] * 3, _outline(run)
    assert run.room is not None and run.room.echo_energy > 0, "the replies came back"


def _outline(run: PipelineRun) -> str:
    return "; ".join(f"{t.outcome}: {t.transcript!r} -> {t.intent}" for t in run.turns)




def test_replies_nobody_talks_over_are_never_cut_by_their_own_echo(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """Five long announcements after a question, in the reverberant living room with
    barge_in_on_speech on: every one plays to its end, none is barged in on."""
    settings = replace_section(Settings(), "listen", barge_in_on_speech=True)
    queued: list[int] = []

    def after_the_answer(assistant: Assistant, event: Event) -> None:
        if event.type is EventType.RUN_END and not queued:
            queued.append(len(ANNOUNCEMENTS))
            for text in ANNOUNCEMENTS:
                assistant.announce(text)

    speech = compose(tts, [0.5, "Hey Jarvis.", 0.3, "What time is it?", 2.0])
    run = run_pipeline(engines, settings, speech, tmp_path, wake_mode=True, realtime=True,
                       on_event=after_the_answer, room="living")  # fmt: skip
    assert [e for e in run.events if e.type is EventType.BARGE_IN] == [], _outline(run)
    said = [t for t in run.turns if t.kind == "say"]
    assert [t.outcome for t in said] == ["answered"] * len(ANNOUNCEMENTS)
    assert [t.intent for t in voice_turns(run)] == ["time"]


def test_without_the_wake_word_a_reply_does_not_hear_itself(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """No-wake mode in the hall (150 ms away, 900 ms of reverberation): one question,
    one turn. With echo_cancel off the same run took the reply's tail for a second
    command ("Volume down.") and acted on it."""
    speech = compose(tts, [0.5, "What time is it?", 3.0])
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=True,
                       room="hall")  # fmt: skip
    assert [t.intent for t in voice_turns(run)] == ["time"], _outline(run)
    assert run.volume == 1.0


def test_the_follow_up_window_opens_at_once_and_does_not_hear_the_replys_tail(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """Two long announcements teach the canceller the kitchen; then a question's
    follow-up window opens the moment the reply ends (no deaf start), and hears
    nothing: the reply's tail is cancelled, not taken for the user."""
    settings = replace_section(Settings(), "listen", follow_up_window_ms=3000)
    converged_at_end: list[bool] = []

    def on_event(assistant: Assistant, event: Event) -> None:
        if event.type is EventType.RUN_END and event.data.get("outcome") == "answered":
            status = assistant.echo_status()
            if not converged_at_end:
                for text in ANNOUNCEMENTS[:2]:
                    assistant.announce(text)
            converged_at_end.append(bool(status.get("converged")))

    question = ["Hey Jarvis.", 0.3, "What time is it?"]
    speech = compose(tts, [0.5, *question, 24.0, *question, 6.0])
    run = run_pipeline(engines, settings, speech, tmp_path, wake_mode=True, realtime=True,
                       on_event=on_event, room="kitchen")  # fmt: skip
    turns = voice_turns(run)
    assert [(t.outcome, t.intent) for t in turns] == [
        ("answered", "time"), ("no_speech", None), ("answered", "time"), ("no_speech", None),
    ], _outline(run)  # fmt: skip
    assert converged_at_end[-1], "the second follow-up window was the canceller's"
