"""Echo cancellation on a real sound card path: PortAudio, ALSA, a sound server.

The speaker is wired to the microphone (tests/pulse_room.py), so every reply
comes back at full level after the server's own buffering. The far end is what
the sound card played, matched with the microphone by PortAudio's clock; these
tests show that this takes the reply out of what the pipeline hears, and that
the daemon on the sound card then hears the user over its reply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests import pulse_room
from tests.pipeline_harness import ANNOUNCEMENTS
from voiced.audio.devices import refresh_device_list_when_idle
from voiced.audio.format import PIPELINE_RATE_HZ
from voiced.audio.soundcard import SoundcardSink, SoundcardSource
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.mic_path import EchoCanceller, build_mic_path
from voiced.pipeline.runner import run_stream
from voiced.pipeline.turn import TurnRecord
from voiced.settings import AudioSettings, Settings, SlmSettings, replace_section
from voiced.speech_synth import compose, write_wav

pytestmark = pytest.mark.skipif(pulse_room.MISSING is not None,
                                reason=pulse_room.MISSING or "")  # fmt: skip

ANNOUNCEMENT = " ".join(ANNOUNCEMENTS[:2])
JUDGED_FRAMES = 200
"""The canceller is judged on what comes once it says it has converged: at least
this many frames (2 s) of the reply must be left by then."""


@pytest.fixture
def room_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with pulse_room.pulse_room(tmp_path / "pulse") as env:
        monkeypatch.setenv("PULSE_SERVER", env["PULSE_SERVER"])
        # PortAudio lists ALSA's pulse device only while a server answers, and reads
        # its list once: earlier tests in this process read it without one.
        assert refresh_device_list_when_idle(), "no sound-card stream may be open here"
        yield env


def _energy(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sum(samples**2))


def test_a_reply_played_on_the_sound_card_is_taken_out_of_the_microphone(
    room_env: dict[str, str], tts: PiperTts
) -> None:
    speech = compose(tts, [ANNOUNCEMENT])
    play_s = len(speech) / 2 / PIPELINE_RATE_HZ
    assert play_s > 10.0, "long enough to learn the room and then be judged"
    sink = SoundcardSink(pulse_room.DEVICE)
    source = SoundcardSource(pulse_room.DEVICE)
    raw_after = cleaned_after = 0.0
    stamped = frames = judged = 0
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        path = build_mic_path(AudioSettings(echo_cancel="auto"), sink, executor,
                              microphone=pulse_room.DEVICE)  # fmt: skip
        assert path.choice.canceller is EchoCanceller.OURS, path.choice.reason
        assert "sound card's clock" in path.choice.reason

        async def listen() -> None:
            nonlocal raw_after, cleaned_after, stamped, frames, judged
            first_s: float | None = None
            async for frame in source.frames():
                if first_s is None:  # the microphone is open: the reply starts
                    sink.enqueue(speech, PIPELINE_RATE_HZ)
                frames += 1
                stamped += frame.captured_at_s is not None
                _, clean = await path.clean(frame)
                at_s = frame.captured_at_s or 0.0
                first_s = at_s if first_s is None else first_s
                heard_s = at_s - first_s
                if clean is not None and clean.converged and heard_s <= play_s:
                    judged += 1
                    raw_after += _energy(frame.pcm)
                    cleaned_after += _energy(clean.pcm)
                if heard_s > play_s + 0.5:
                    break

        try:
            asyncio.run(asyncio.wait_for(listen(), play_s + 20.0))
        finally:
            source.close()
            sink.close()
    assert stamped == frames > 0, "every microphone frame carries its capture time"
    assert judged >= JUDGED_FRAMES, f"converged with only {judged} frames of the reply left"
    assert raw_after > 0, "the reply came back into the microphone"
    erle_db = 10.0 * np.log10(raw_after / max(cleaned_after, 1.0))
    print(f"sound card loopback: ERLE {erle_db:.1f} dB, delay found {path.delay_ms} ms")
    assert erle_db > 20.0, f"only {erle_db:.1f} dB of the echo was removed"
    status = path.status()
    assert status["converged"] is True and status["delay_ms"] is not None, status


LONG_SAYS = ANNOUNCEMENTS[:3]
INTERRUPT_AFTER_S = 3.0
"""Into the story's playback, the user asks the time over it."""
SESSION_TIMEOUT_S = 240.0


def test_the_daemon_on_a_sound_card_is_not_cut_by_its_echo_and_hears_the_user_over_it(
    room_env: dict[str, str], engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    """The real pipeline, in real time, on the sound server with the speaker wired
    to the microphone, barge_in_on_speech on: a question, three announcements
    nobody talks over (none is cut by its own echo), then a story the user
    interrupts with a question (one barge-in, the question answered once)."""
    wavs = {}
    for name, parts in {
        "time": [0.3, "Hey Jarvis.", 0.3, "What time is it?", 0.3],
        "story": [0.3, "Hey Jarvis.", 0.3, "Tell me a long story about a clever fox.", 0.3],
        "over": ["What time is it?", 0.3],
    }.items():
        wavs[name] = tmp_path / f"{name}.wav"
        write_wav(wavs[name], compose(tts, parts))
    settings = dataclasses.replace(Settings(), slm=SlmSettings(max_reply_tokens=160))
    settings = replace_section(settings, "listen", barge_in_on_speech=True)
    settings = replace_section(settings, "audio", volume=0.5)
    sink = SoundcardSink(pulse_room.DEVICE)
    source = SoundcardSource(pulse_room.DEVICE)
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    assistant = Assistant(settings, engines, sink, bus, wake_mode=True,
                          microphone=pulse_room.DEVICE)  # fmt: skip
    turns: list[TurnRecord] = []
    assistant.on_turn_done.append(turns.append)
    speakers: list[subprocess.Popen[bytes]] = []
    done = asyncio.Event()

    def say(name: str) -> None:
        speakers.append(pulse_room.say_into_the_room(wavs[name], room_env))

    runs_ended: list[Event] = []
    interrupted: list[bool] = []

    def on_event(event: Event) -> None:
        loop = asyncio.get_running_loop()
        story_playing = len(runs_ended) == 1 + len(LONG_SAYS)
        if event.type is EventType.PLAYBACK_START and story_playing and not interrupted:
            interrupted.append(True)
            loop.call_later(INTERRUPT_AFTER_S, say, "over")
        if event.type is not EventType.RUN_END:
            return
        runs_ended.append(event)
        if len(runs_ended) == 1:
            for text in LONG_SAYS:
                assistant.announce(text)
        elif len(runs_ended) == 1 + len(LONG_SAYS):
            loop.call_later(0.5, say, "story")
        elif len(runs_ended) == 3 + len(LONG_SAYS):
            loop.call_later(1.0, done.set)

    bus.add_listener(on_event)

    async def main() -> None:
        async def stop_when_done() -> None:
            await assistant.first_frame.wait()
            say("time")
            await done.wait()
            source.close()

        stopper = asyncio.create_task(stop_when_done())
        try:
            session = run_stream(assistant, source, realtime=True, wait_for_timers=False)
            await asyncio.wait_for(session, SESSION_TIMEOUT_S)
        finally:
            stopper.cancel()
            await assistant.close()

    try:
        asyncio.run(main())
    finally:
        source.close()
        sink.close()
        for speaker in speakers:
            speaker.wait(10)
    outline = "; ".join(f"{t.kind} {t.outcome}: {t.transcript!r} -> {t.intent}" for t in turns)
    status = assistant.echo_status()
    print(f"sound card session: {outline}; echo {status}")
    barge_ins = [e.data.get("reason") for e in events if e.type is EventType.BARGE_IN]
    assert barge_ins == ["speech"], outline
    said = [t.outcome for t in turns if t.kind == "say"]
    assert said == ["answered"] * len(LONG_SAYS), outline
    voice = [(t.outcome, t.intent) for t in turns if t.kind == "voice"]
    assert voice[0] == ("answered", "time") and voice[-1] == ("answered", "time"), outline
    assert [outcome for outcome, _ in voice] == ["answered", "barged_in", "answered"], outline
    assert status.get("converged") is True, status
