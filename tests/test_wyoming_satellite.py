"""voiced as a Home Assistant satellite, driven by the real ``wyoming`` client
replaying Home Assistant's sequences (homeassistant/components/wyoming/
assist_satellite.py): describe, run-satellite, pings; a local-wake run with its
TTS audio back and ``played``; timers; an announcement; pause on mute; six
seconds of client silence; a second pipeline connection."""

from __future__ import annotations

import asyncio

import pytest
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.timer import TimerCancelled, TimerFinished, TimerStarted
from wyoming.tts import Synthesize
from wyoming.vad import VoiceStarted

from tests.wyoming_harness import (
    Voiced,
    client_of,
    read,
    read_until,
    running_voiced,
    types,
    wyoming_settings,
)
from voiced.audio.resample import resample_pcm
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.intents.normalize import normalize
from voiced.pipeline.events import EventType
from voiced.pipeline.state import State
from voiced.speech_synth import compose

pytestmark = pytest.mark.timeout(240)
TTS_RATE_HZ = 22050
"""What Home Assistant asks a Wyoming satellite's TTS for."""


async def become_satellite(client: AsyncTcpClient) -> None:
    """Home Assistant's opening: run-satellite, describe; then it pings."""
    await client.write_event(RunSatellite().event())
    await client.write_event(Describe().event())
    await read_until(client, "info")


async def ping(client: AsyncTcpClient) -> list[Event]:
    """A ping and everything up to its pong (all that was queued before it)."""
    await client.write_event(Ping(text="ha").event())
    return await read_until(client, "pong")


async def play_reply(client: AsyncTcpClient, pcm: bytes, rate_hz: int = TTS_RATE_HZ) -> None:
    await client.write_event(AudioStart(rate=rate_hz, width=2, channels=1).event())
    for offset in range(0, len(pcm), 2048):
        chunk = AudioChunk(rate=rate_hz, width=2, channels=1, audio=pcm[offset : offset + 2048])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())


async def wait_for(condition: object, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - state has no event
            await asyncio.sleep(0.05)


def test_local_wake_runs_home_assistants_pipeline_and_plays_its_reply(
    engines: Engines, tts: PiperTts
) -> None:
    command = compose(tts, [0.3, "Hey Jarvis.", 0.4, "What is the weather like?", 1.5])
    reply = tts.synthesize_all("It is sunny and warm.", repeatable=True)
    reply_22k = resample_pcm(reply, tts.sample_rate_hz, TTS_RATE_HZ)

    async def main() -> tuple[list[Event], list[Event], list[Event], Voiced]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as client:
                await become_satellite(client)
                assert types(await ping(client)) == ["pong"]
                voiced.mic.say(command)
                run = await read_until(client, "run-pipeline")
                await client.write_event(VoiceStarted().event())
                streamed = await read_until(client, "audio-chunk")
                await wait_for(lambda: not voiced.mic.saying)
                await client.write_event(Transcript(text="What is the weather like?").event())
                streamed += await ping(client)  # everything sent before the transcript
                after = await ping(client)  # nothing streams after it
                await client.write_event(Synthesize(text="It is sunny and warm.").event())
                await play_reply(client, reply_22k)
                played = await read_until(client, "played")
            return run, streamed, after + played, voiced

    run, streamed, after, voiced = asyncio.run(main())
    assert types(run) == ["detection", "run-pipeline"]
    assert run[0].data["name"] == "hey_jarvis"
    assert run[1].data["start_stage"] == "asr" and run[1].data["end_stage"] == "tts"
    chunks = [e for e in streamed if e.type == "audio-chunk"]
    assert {(e.data["rate"], e.data["width"], e.data["channels"]) for e in chunks} == {
        (16000, 2, 1)
    }
    assert engines.asr is not None
    heard = engines.asr.transcribe(b"".join(e.payload or b"" for e in chunks)).text
    assert "weather" in normalize(heard)
    assert types(after) == ["pong", "played"]
    assert voiced.server.satellite is not None and voiced.server.satellite.runs == 1
    spoken = engines.asr.transcribe(voiced.output().tobytes()).text
    assert "sunny" in normalize(spoken)
    assert [t for t in voiced.assistant.recent_turns if t.kind == "voice"] == []


def test_timers_from_home_assistant_ring_once_in_voiced(engines: Engines) -> None:
    async def main() -> Voiced:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as client:
                await become_satellite(client)
                timers = voiced.assistant.timers
                started = [
                    TimerStarted(id="pizza1", total_seconds=1, name="pizza"),
                    TimerStarted(id="t2", total_seconds=600, start_minutes=10),
                    TimerStarted(id="t3", total_seconds=600, name="tea"),
                ]
                for event in started:
                    await client.write_event(event.event())
                await ping(client)
                assert sorted(t.name for t in timers.running()) == ["ha-pizza1", "ha-t2", "ha-t3"]
                await client.write_event(TimerCancelled(id="t3").event())
                await wait_for(lambda: timers.pending == 1)  # pizza rang on voiced's clock
                await client.write_event(TimerFinished(id="pizza1").event())  # Home Assistant's
                await client.write_event(TimerFinished(id="t2").event())  # before voiced's
                await ping(client)
                await wait_for(lambda: len([t for t in voiced.assistant.recent_turns
                                            if t.kind == "say"]) == 2)  # fmt: skip
                await ping(client)
            return voiced

    voiced = asyncio.run(main())
    fired = [e.data["label"] for e in voiced.events if e.type is EventType.TIMER_FIRED]
    assert sorted(fired) == ["10 minute", "pizza"]
    said = sorted(t.reply for t in voiced.assistant.recent_turns if t.kind == "say")
    assert said == ["Your 10 minute timer is done.", "Your pizza timer is done."]
    assert voiced.assistant.timers.pending == 0


def test_announcement_plays_then_played(engines: Engines, tts: PiperTts) -> None:
    audio = tts.synthesize_all("The laundry is done.", repeatable=True)

    async def main() -> tuple[list[Event], Voiced]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as client:
                await become_satellite(client)
                await play_reply(client, audio, tts.sample_rate_hz)
                played = await read_until(client, "played")
                played += await ping(client)
            return played, voiced

    played, voiced = asyncio.run(main())
    assert types(played) == ["played", "pong"]
    assert engines.asr is not None
    assert "laundry" in normalize(engines.asr.transcribe(voiced.output().tobytes()).text)


def test_pause_satellite_mutes_and_a_local_mute_ends_the_stream(
    engines: Engines, tts: PiperTts
) -> None:
    wake = compose(tts, [0.3, "Hey Jarvis.", 1.0])

    async def main() -> tuple[list[Event], list[Event], list[State], Voiced]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            assistant = voiced.assistant
            states = []
            async with client_of(voiced) as client:
                await become_satellite(client)
                await client.write_event(PauseSatellite().event())
                await ping(client)
                states.append(assistant.state)
                voiced.mic.say(wake)  # muted: not heard
                await wait_for(lambda: not voiced.mic.saying)
                paused = await ping(client)
                await client.write_event(RunSatellite().event())
                await ping(client)
                states.append(assistant.state)
                voiced.mic.say(wake)
                await read_until(client, "run-pipeline")
                await read_until(client, "audio-chunk")
                assistant.set_muted(True)  # voiced's own mute (HTTP, MQTT)
                ended = await read_until(client, "audio-stop")
                ended += await ping(client)
                ended += await ping(client)
                states.append(assistant.state)
            states.append(assistant.state)
            return paused, ended, states, voiced

    paused, ended, states, voiced = asyncio.run(main())
    assert types(paused) == ["pong"]
    assert types(ended)[-3:] == ["audio-stop", "pong", "pong"]
    assert states == [State.MUTED, State.IDLE, State.MUTED, State.MUTED]
    assert voiced.server.satellite is not None and voiced.server.satellite.runs == 1


def test_pings_answered_after_six_seconds_of_client_silence(engines: Engines) -> None:
    async def main() -> list[Event]:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await become_satellite(client)
            await asyncio.sleep(6.0)  # Home Assistant busy elsewhere: voiced must not drop it
            return await ping(client) + await ping(client)

    assert types(asyncio.run(main())) == ["pong", "pong"]


def test_a_second_pipeline_connection_is_refused_and_describe_answered(
    engines: Engines,
) -> None:
    async def main() -> tuple[list[Event | None], list[Event], list[Event]]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as first, client_of(voiced) as second:
                await become_satellite(first)
                await second.write_event(RunSatellite().event())
                refused = [await read(second), await read(second)]
                async with client_of(voiced) as third:
                    await third.write_event(Describe().event())
                    described = await read_until(third, "info")
                still = await ping(first)
            return refused, described, still

    refused, described, still = asyncio.run(main())
    assert refused[0] is not None and refused[0].type == "error"
    assert refused[0].data["code"] == "satellite-busy"
    assert refused[1] is None  # and closed
    assert types(described) == ["info"] and types(still) == ["pong"]


def test_the_wake_word_during_home_assistants_reply_stops_it_and_starts_a_run(
    engines: Engines, tts: PiperTts
) -> None:
    long_reply = tts.synthesize_all(
        "Here is a long answer that goes on for a while, about the weather this week, "
        "the rain on Tuesday, the wind on Wednesday and the sun at the weekend.",
        repeatable=True,
    )
    wake = compose(tts, [0.2, "Hey Jarvis.", 1.0])

    async def main() -> tuple[list[Event], Voiced]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as client:
                await become_satellite(client)
                await play_reply(client, long_reply, tts.sample_rate_hz)
                await ping(client)  # the reply is queued on the speaker
                voiced.mic.say(wake)
                events = await read_until(client, "run-pipeline")
                await client.write_event(Transcript(text="").event())
                events += await ping(client)
            return events, voiced

    events, voiced = asyncio.run(main())
    assert types(events) == ["played", "detection", "run-pipeline", "pong"]
    assert engines.asr is not None
    heard = normalize(engines.asr.transcribe(voiced.output().tobytes()).text)
    assert "long answer" in heard and "weekend" not in heard  # cut off by the wake word


def test_home_assistant_reconnecting_replaces_a_connection_it_gave_up_on(
    engines: Engines,
) -> None:
    """Home Assistant drops a satellite silent for 5 s and dials again; the old
    connection may still look open here (a half-open TCP connection)."""

    async def main() -> tuple[Event | None, list[Event]]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as old, client_of(voiced) as new:
                await become_satellite(old)
                await asyncio.sleep(5.5)  # nothing from the old one for longer than HA waits
                await become_satellite(new)
                pongs = await ping(new)
                closed = await read(old)
            return closed, pongs

    closed, pongs = asyncio.run(main())
    assert closed is None
    assert types(pongs) == ["pong"]


def test_audio_from_home_assistant_queued_on_the_speaker_is_capped(engines: Engines) -> None:
    """The satellite's connection sends audio faster than it plays: each audio-start
    began a fresh 600 s allowance, so a peer repeating them (no audio-stop) queued
    without end (memory, and resampling on the event loop). What is queued ahead of
    the speaker stays under MAX_PLAYBACK_S, however many replies it is split into."""
    from voiced.audio.format import PIPELINE_RATE_HZ
    from voiced.wyoming.satellite import MAX_PLAYBACK_S

    rate = 16000
    block = b"\x10\x00" * (rate * 2)  # 2 s of quiet sound per 64 KB chunk
    reply_s = 300

    async def main() -> int:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await become_satellite(client)
            for _ in range(3):
                await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
                for _ in range(reply_s // 2):
                    chunk = AudioChunk(rate=rate, width=2, channels=1, audio=block)
                    await client.write_event(chunk.event())
            await ping(client)
            # The sink's queue (voiced.audio.playback) has no public length.
            pending = int(voiced.assistant.sink._queue.pending_samples)  # type: ignore[attr-defined]
            voiced.assistant.sink.clear()  # the stream's end waits for the speaker
            return pending

    pending = asyncio.run(main())
    assert pending <= MAX_PLAYBACK_S * PIPELINE_RATE_HZ, pending / PIPELINE_RATE_HZ
    assert pending >= (MAX_PLAYBACK_S - 10) * PIPELINE_RATE_HZ, "up to the cap is played"
