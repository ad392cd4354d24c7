"""The real pipeline in-process: wake gating, one reply per utterance, barge-in, timers."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline_harness import rms, run_pipeline, voice_turns
from voiced.engines.loader import Engines, Role, make_wake_detector, resolve_model_paths
from voiced.engines.tts import PiperTts
from voiced.intents.normalize import normalize
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventType
from voiced.pipeline.responder import Responder, Response
from voiced.settings import Settings, SlmSettings, parse_settings
from voiced.speech_synth import compose

pytestmark = pytest.mark.models


def record_texts(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[str]:
    """Wrap ``target.name`` so each call's text is noted before it runs; returns the notes."""
    texts: list[str] = []
    real = getattr(target, name)

    def recording(text: str, *args: object, **kwargs: object) -> object:
        texts.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(target, name, recording)
    return texts


def test_no_reply_without_the_wake_word(engines: Engines, tts: PiperTts, tmp_path: Path) -> None:
    speech = compose(tts, [0.5, "What is the capital of France?", 1.0, "Set a timer.", 2.0])
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=True, realtime=False)
    assert run.turns == []
    assert rms(run.output) == 0.0


def test_one_reply_per_utterance_without_wake(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    speech = compose(tts, [0.4, "What time is it?", 1.5, "What day is it?", 1.5,
                           "Turn it up.", 1.5])  # fmt: skip
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=False)
    turns = voice_turns(run)
    assert [t.intent for t in turns] == ["time", "day", "volume_up"]
    assert all(t.outcome == "answered" and t.reply for t in turns)


def test_timer_fires_and_is_spoken(engines: Engines, tts: PiperTts, tmp_path: Path) -> None:
    speech = compose(tts, [0.4, "Set a timer for two seconds.", 1.0])
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=False)
    assert [t.intent for t in voice_turns(run) if t.outcome == "answered"] == ["timer_set"]
    fired = [e for e in run.events if e.type is EventType.TIMER_FIRED]
    assert len(fired) == 1
    said = [t for t in run.turns if t.kind == "say"]
    assert len(said) == 1 and said[0].outcome == "answered"
    assert {t.reply for t in said} == {"Your 2 seconds timer is done."}
    assert engines.asr is not None
    heard = normalize(engines.asr.transcribe(run.output.tobytes()).text)
    assert "timer set for 2 seconds" in heard and "timer is done" in heard


def test_barge_in_stops_a_long_reply(engines: Engines, tts: PiperTts, tmp_path: Path) -> None:
    """The wake word during a long reply stops playback within 150 ms of audio."""
    settings = dataclasses.replace(Settings(), slm=SlmSettings(max_reply_tokens=160))
    request = compose(tts, [0.4, "Hey Jarvis.", 0.3, "Tell me a long story about a brave dragon."])
    interrupt_at = len(request) // 2 + 16000 * 6  # 6 s after the request ends
    speech = request + bytes(interrupt_at * 2 - len(request)) + compose(
        tts, ["Hey Jarvis.", 0.3, "What time is it?", 4.0])  # fmt: skip
    run = run_pipeline(engines, settings, speech, tmp_path, wake_mode=True, realtime=True)

    first, second = voice_turns(run)[:2]
    assert first.outcome == "barged_in" and first.first_audio_ms is not None
    barge = next(e for e in run.events if e.type is EventType.BARGE_IN)
    stop_sample = int(barge.stream_ms * 16)
    assert stop_sample - interrupt_at < 16000 * 2, "barge-in came with the second wake word"
    # Playback stops within 150 ms of audio (the sink stops at the next 10 ms frame).
    after = run.output[stop_sample + 160 * 2 : stop_sample + 16000]
    assert rms(after) == 0.0
    assert rms(run.output[interrupt_at - 8000 : interrupt_at]) > 0, "it was speaking before"
    assert second.intent == "time" and second.outcome == "answered"


def test_a_stop_word_ends_a_long_reply_without_the_wake_word(
    engines: Engines, tts: PiperTts, tmp_path: Path, models_dir: Path
) -> None:
    """[[wake.words]] "alexa" with action stop, said over a reply (barge-in by wake word
    off): the reply stops, no new turn starts, the word is heard once."""
    settings = parse_settings(
        '[slm]\nmax_reply_tokens = 160\n[listen]\nbarge_in = false\n'
        '[[wake.words]]\nmodel = "alexa"\naction = "stop"\n'
    )  # fmt: skip
    words = make_wake_detector(settings, resolve_model_paths(settings, models_dir, {Role.WAKE}))
    request = compose(tts, [0.4, "Hey Jarvis.", 0.3, "Tell me a long story about a brave dragon."])
    stop_at = len(request) // 2 + 16000 * 6  # 6 s after the request ends
    speech = request + bytes(stop_at * 2 - len(request)) + compose(tts, ["Alexa.", 4.0])
    with_words = dataclasses.replace(engines, wake=words)
    run = run_pipeline(with_words, settings, speech, tmp_path, wake_mode=True, realtime=True)

    assert [t.outcome for t in voice_turns(run)] == ["cancelled"]
    heard = [e for e in run.events if e.type is EventType.WORD_HEARD]
    assert [e.data for e in heard] == [{"word": "open:alexa", "action": "stop"}]
    stop_sample = int(heard[0].stream_ms * 16)
    assert stop_sample > stop_at, "it was the stop word that stopped it"
    assert rms(run.output[stop_sample + 160 * 2 :]) == 0.0, "nothing more was said"
    assert rms(run.output[stop_at - 8000 : stop_at]) > 0, "it was speaking before"


def record_threads(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, calls: list[tuple[str, int]]
) -> None:
    """Wrap ``target.name`` so each call notes the thread it ran on."""
    real = getattr(target, name)

    def recording(*args: object, **kwargs: object) -> object:
        calls.append((name, threading.get_ident()))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, recording)


def test_no_model_runs_on_the_event_loop(
    engines: Engines, tts: PiperTts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every model call (wake word, speech-to-text, language model, synthesis) runs in a
    worker thread, never on the thread that runs the event loop."""
    speech = compose(tts, [0.3, "Hey Jarvis.", 0.3, "What is the capital of France?", 4.0])
    assert engines.asr and engines.slm and engines.wake
    calls: list[tuple[str, int]] = []
    for target, name in [(engines.wake, "process"), (engines.asr, "transcribe"),
                         (engines.slm, "stream_reply"), (tts, "synthesize")]:  # fmt: skip
        record_threads(monkeypatch, target, name, calls)
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=True, realtime=True)
    turns = voice_turns(run)
    assert turns and turns[0].reply, "the SLM, ASR and TTS all ran"
    assert {name for name, _ in calls} == {"process", "transcribe", "stream_reply", "synthesize"}
    loop_thread = threading.get_ident()  # asyncio.run ran the loop on this thread
    assert [name for name, thread in calls if thread == loop_thread] == []
    assert np.abs(run.output).max() > 0


def test_the_thread_record_sees_a_call_made_on_the_loop(
    engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: a model called from a coroutine is recorded on the loop."""
    assert engines.asr is not None
    calls: list[tuple[str, int]] = []
    record_threads(monkeypatch, engines.asr, "transcribe", calls)

    async def main() -> None:
        engines.asr.transcribe(bytes(3200))  # type: ignore[union-attr]  # blocking, on the loop

    asyncio.run(main())
    assert calls == [("transcribe", threading.get_ident())]


def test_follow_up_window_needs_no_second_wake_word(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    follow_up = dataclasses.replace(Settings().listen, follow_up_window_ms=3000)
    settings = dataclasses.replace(Settings(), listen=follow_up)
    speech = compose(tts, [0.4, "Hey Jarvis.", 0.3, "What time is it?", 1.0,
                           "What day is it?", 2.0])  # fmt: skip
    run = run_pipeline(engines, settings, speech, tmp_path, wake_mode=True, realtime=False)
    assert [t.intent for t in voice_turns(run) if t.outcome == "answered"] == ["time", "day"]
    # Off by default: the same audio gets one reply.
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=True, realtime=False)
    assert [t.intent for t in voice_turns(run) if t.outcome == "answered"] == ["time"]


def test_first_words_go_early_only_while_the_model_writes(
    engines: Engines, tts: PiperTts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A language-model reply starts speaking after its first few words; an intent's
    reply is known in full and is synthesised whole, so it keeps its intonation."""
    speech = compose(tts, [0.4, "Cancel the timer.", 1.5, "Why is the sky blue?", 1.5])
    synthesised = record_texts(monkeypatch, tts, "synthesize")
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=False)
    turns = voice_turns(run)
    assert [t.intent for t in turns] == ["timer_cancel", None]
    assert synthesised[0] == "There is no timer running."
    first_words = Settings().tts.first_chunk_max_words
    assert len(synthesised[1].split()) <= first_words < len(turns[1].reply.split())
    assert turns[1].reply.startswith(synthesised[1])


def test_the_time_reply_is_ready_before_the_question(
    engines: Engines, tts: PiperTts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While idle the assistant synthesises the clock replies, so the answers to
    "what time is it?" and "what day is it?" play from the phrase cache instead of
    being synthesised (the date whole, not cut at its comma)."""
    speech = compose(tts, [0.6, "What time is it?", 1.5, "What day is it?", 1.5])
    fresh = record_texts(monkeypatch, tts, "_synthesize_fresh")
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=False)
    turns = voice_turns(run)
    assert [(t.intent, t.outcome) for t in turns] == [("time", "answered"), ("day", "answered")]
    for turn in turns:
        assert turn.reply in tts.phrases.pinned("clock")
        assert fresh.count(turn.reply) <= 1, "synthesised at most once, ahead of the question"
    assert not any(text.endswith(",") for text in fresh), "the date is never cut at its comma"
    assert rms(run.output) > 0
    # Turned off, the clock replies are not prepared by the assistant.
    settings = dataclasses.replace(
        Settings(), tts=dataclasses.replace(Settings().tts, prepare_clock_replies=False)
    )
    tts.phrases.pin("clock", {})
    run = run_pipeline(engines, settings, compose(tts, [0.6, "Turn it up.", 1.0]), tmp_path,
                       wake_mode=False, realtime=False)  # fmt: skip
    assert [t.intent for t in voice_turns(run)] == ["volume_up"]
    assert tts.phrases.pinned("clock") == frozenset()


def test_the_model_waits_while_the_first_words_are_synthesised(
    engines: Engines, tts: PiperTts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On two cores the language model would slow the synthesis of the first words,
    which the user is waiting for; it is paused then, and runs during the rest."""
    responses: list[Response] = []
    real_respond = Responder.respond

    def keeping(self: Responder, text: str, now_s: float, **kwargs: object) -> Response:
        responses.append(real_respond(self, text, now_s, **kwargs))  # type: ignore[arg-type]
        return responses[-1]

    generating_during: list[tuple[str, bool]] = []
    real_synthesize = tts.synthesize

    def recording(text: str, *args: object, **kwargs: object) -> object:
        proceed = responses[-1].proceed if responses else None
        generating_during.append((text, proceed is not None and proceed.is_set()))
        return real_synthesize(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Responder, "respond", keeping)
    monkeypatch.setattr(tts, "synthesize", recording)
    speech = compose(tts, [0.4, "Why is the sky blue?", 1.5])
    generating_during.clear()
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=False)
    (turn,) = voice_turns(run)
    assert turn.intent is None and turn.outcome == "answered"
    assert len(generating_during) >= 2, generating_during
    (first_words, generating), *rest = generating_during
    assert not generating, "paused while the first words are synthesised"
    assert all(generating for _, generating in rest), "running while the rest is"
    assert turn.reply.startswith(first_words)
    assert responses[-1].proceed is not None and responses[-1].proceed.is_set(), "left running"


# -- the turn engine in realtime, with the real models -----------------------------
# Fed at the pace of a microphone, so the speculative run at the first pause is the
# path every command takes (a file read faster than real time would commit first).


def test_realtime_timer_set_cancel_set_rings_once(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """The session a new user tries: set, cancel, set again, then silence. Each
    command acts once: one timer rings, once."""
    # Gaps of 4 s: speech during a reply is not heard, and on a loaded 2-core
    # machine a reply can take 3 s to be heard out.
    speech = compose(tts, [0.4, "Set a timer for ten seconds.", 4.0, "Cancel the timer.", 4.0,
                           "Set a timer for eight seconds.", 1.0])  # fmt: skip
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=True)
    turns = [t for t in voice_turns(run) if t.outcome != "no_speech"]  # not ring windows
    assert [t.intent for t in turns] == ["timer_set", "timer_cancel", "timer_set"], [
        t.transcript for t in turns]  # fmt: skip
    assert [t.reply for t in turns] == [
        "Timer set for 10 seconds.", "Timer cancelled.", "Timer set for 8 seconds."]  # fmt: skip
    fired = [e for e in run.events if e.type is EventType.TIMER_FIRED]
    assert [e.data["label"] for e in fired] == ["8 seconds"]
    said = [t.reply for t in run.turns if t.kind == "say"]
    assert said == ["Your 8 seconds timer is done."], "exactly one alert"
    assert run.timers_pending == 0
    stt_ends = [e for e in run.events if e.type is EventType.STT_END]
    assert len(stt_ends) == len(turns), "one stt-end per run"


def test_realtime_turn_it_down_lowers_the_volume_one_step(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    speech = compose(tts, [0.4, "Turn it down.", 2.0])
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=True)
    assert [t.intent for t in voice_turns(run)] == ["volume_down"]
    assert run.volume == pytest.approx(0.8)


def test_realtime_mute_during_a_command_ends_it(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """Muted half a second into "Set a timer for ten seconds.": nothing of it is
    heard, done or said, and after the muted event no event at all."""

    def on_event(assistant: Assistant, event: Event) -> None:
        if event.type is EventType.STT_VAD_START:
            asyncio.get_running_loop().call_later(0.5, assistant.set_muted, True)

    speech = compose(tts, [0.4, "Set a timer for ten seconds.", 2.0, "Turn it down.", 2.0])
    run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False, realtime=True,
                       on_event=on_event)  # fmt: skip
    muted_at = next(i for i, e in enumerate(run.events) if e.type is EventType.MUTED)
    assert run.events[muted_at + 1 :] == []
    assert run.timers_pending == 0 and run.volume == 1.0
    assert [t.outcome for t in voice_turns(run)] == ["cancelled"]
    assert rms(run.output) == 0.0


def test_realtime_follow_up_window(engines: Engines, tts: PiperTts, tmp_path: Path) -> None:
    follow_up = dataclasses.replace(Settings().listen, follow_up_window_ms=5000)
    settings = dataclasses.replace(Settings(), listen=follow_up)
    speech = compose(tts, [0.4, "Hey Jarvis.", 0.3, "What time is it?", 3.5,
                           "Turn it down.", 3.5])  # fmt: skip
    run = run_pipeline(engines, settings, speech, tmp_path, wake_mode=True, realtime=True)
    answered = [t.intent for t in voice_turns(run) if t.outcome == "answered"]
    assert answered == ["time", "volume_down"]
    assert run.volume == pytest.approx(0.8)
