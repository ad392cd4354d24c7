"""voiced's Wyoming services driven by the real ``wyoming`` client, as Home
Assistant's stt, tts, wake_word and conversation entities drive them, with the
real models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop
from wyoming.wake import Detect

from tests.wyoming_harness import (
    client_of,
    read,
    read_until,
    running_voiced,
    types,
    wyoming_settings,
)
from voiced.audio.format import PIPELINE_RATE_HZ
from voiced.audio.resample import resample_pcm
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.intents.normalize import normalize
from voiced.speech_synth import compose

pytestmark = pytest.mark.timeout(180)
CHUNK_BYTES = 2048


async def send_audio(client: object, pcm: bytes, rate_hz: int, *, channels: int = 1) -> None:
    write = client.write_event  # type: ignore[attr-defined]
    await write(AudioStart(rate=rate_hz, width=2, channels=channels).event())
    for offset in range(0, len(pcm), CHUNK_BYTES):
        chunk = pcm[offset : offset + CHUNK_BYTES]
        await write(AudioChunk(rate=rate_hz, width=2, channels=channels, audio=chunk).event())
    await write(AudioStop().event())


def test_describe_advertises_only_what_is_enabled(engines: Engines) -> None:
    async def main() -> tuple[Info, Info]:
        infos = []
        for settings in (
            wyoming_settings(),
            wyoming_settings(asr=False, satellite=False, handle=False, area=""),
        ):
            async with running_voiced(engines, settings) as voiced, client_of(voiced) as client:
                await client.write_event(Describe().event())
                (event,) = [e for e in await read_until(client, "info")]
                infos.append(Info.from_event(event))
        return infos[0], infos[1]

    everything, fewer = asyncio.run(main())
    assert [p.name for p in everything.asr] == ["voiced-asr"]
    assert [p.name for p in everything.tts] == ["voiced-tts"]
    assert [p.name for p in everything.handle] == ["voiced-handle"]
    models = [m for p in everything.wake for m in p.models]
    assert [(m.name, m.phrase) for m in models] == [("hey_jarvis", "Hey Jarvis")]
    assert everything.satellite is not None and everything.satellite.installed
    assert everything.satellite.active_wake_words == ["hey_jarvis"]
    assert fewer.asr == [] and fewer.handle == [] and fewer.satellite is None
    assert len(fewer.tts) == 1 and len(fewer.wake) == 1


def test_transcribe_at_16_and_22_khz_and_a_clear_error_for_8_bit(
    engines: Engines, tts: PiperTts
) -> None:
    speech = compose(tts, [0.3, "Set a timer for five minutes.", 0.5])
    at_22k = resample_pcm(speech, PIPELINE_RATE_HZ, 22050)

    async def main() -> tuple[list[str], list[Event]]:
        texts = []
        async with running_voiced(engines, wyoming_settings()) as voiced:
            for pcm, rate in ((speech, PIPELINE_RATE_HZ), (at_22k, 22050)):
                async with client_of(voiced) as client:
                    await client.write_event(Transcribe(language="en").event())
                    await send_audio(client, pcm, rate)
                    events = await read_until(client, "transcript")
                    assert types(events) == ["transcript"]
                    texts.append(events[0].data["text"])
            async with client_of(voiced) as client:
                await client.write_event(Transcribe().event())
                await client.write_event(AudioStart(rate=16000, width=1, channels=1).event())
                refused = [await read(client)]
        return texts, [e for e in refused if e is not None]

    texts, refused = asyncio.run(main())
    assert len(texts) == 2
    assert all("timer for 5 minutes" in normalize(t) for t in texts), texts
    assert [(e.type, e.data.get("code")) for e in refused] == [("error", "bad-audio")]


def test_synthesize_streams_sentences_and_ignores_streaming_events_first(
    engines: Engines,
) -> None:
    text = "The kitchen light is on. The door is locked."

    async def main() -> list[list[Event]]:
        replies = []
        async with running_voiced(engines, wyoming_settings()) as voiced:
            for streaming_first in (False, True):
                async with client_of(voiced) as client:
                    if streaming_first:  # as Home Assistant may send before `synthesize`
                        await client.write_event(SynthesizeStart().event())
                        await client.write_event(SynthesizeChunk(text=text).event())
                        await client.write_event(SynthesizeStop().event())
                    await client.write_event(Synthesize(text=text).event())
                    replies.append(await read_until(client, "audio-stop"))
        return replies

    replies = asyncio.run(main())
    assert engines.asr is not None
    for events in replies:
        kinds = types(events)
        assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop"
        assert set(kinds[1:-1]) == {"audio-chunk"}
        rate = events[0].data["rate"]
        pcm = b"".join(e.payload or b"" for e in events[1:-1])
        heard = engines.asr.transcribe(resample_pcm(pcm, rate, PIPELINE_RATE_HZ)).text
        assert "kitchen light" in normalize(heard) and "door is locked" in normalize(heard)


def test_detect_hears_the_wake_word_once_and_not_other_speech(
    engines: Engines, tts: PiperTts
) -> None:
    wake = compose(tts, [0.5, "Hey Jarvis.", 1.0])
    other = compose(tts, [0.5, "What time is it?", 1.0])

    async def main() -> list[list[str]]:
        answers = []
        async with running_voiced(engines, wyoming_settings()) as voiced:
            for pcm in (wake, other):
                async with client_of(voiced) as client:
                    await client.write_event(Detect(names=["hey_jarvis"]).event())
                    await send_audio(client, pcm, PIPELINE_RATE_HZ)
                    answer = await read(client)
                    assert answer is not None
                    answers.append([f"{answer.type}:{answer.data.get('name', '')}"])
        return answers

    heard_wake, heard_other = asyncio.run(main())
    assert heard_wake == ["detection:hey_jarvis"]
    assert heard_other == ["not-detected:"]


def test_handle_answers_with_voiceds_intents(engines: Engines) -> None:
    async def main() -> tuple[list[Event], list[str | None]]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as client:
                await client.write_event(
                    Event(type="transcript", data={"text": "Turn the volume down."})
                )
                events = await read_until(client, "handled")
            return events, [t.intent for t in voiced.assistant.recent_turns]

    events, intents = asyncio.run(main())
    assert types(events) == ["handled"]
    assert events[0].data["text"]
    assert intents == ["volume_down"]


def test_output_audio_is_real_speech(engines: Engines) -> None:
    """Guards the synthesize test above against passing on silence."""

    async def main() -> bytes:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await client.write_event(Synthesize(text="Hello there.").event())
            events = await read_until(client, "audio-stop")
        return b"".join(e.payload or b"" for e in events)

    pcm = asyncio.run(main())
    assert float(np.abs(np.frombuffer(pcm, dtype="<i2")).mean()) > 100


def test_a_wake_stream_may_outlast_max_audio_s_and_a_transcription_may_not(
    engines: Engines, tts: PiperTts
) -> None:
    long_wait = compose(tts, [2.5, "Hey Jarvis.", 1.0])  # the cap below is 1 s

    async def main() -> tuple[Event | None, Event | None]:
        async with running_voiced(engines, wyoming_settings(max_audio_s=1.0)) as voiced:
            async with client_of(voiced) as client:
                await client.write_event(Detect().event())
                await send_audio(client, long_wait, PIPELINE_RATE_HZ)
                heard = await read(client)
            async with client_of(voiced) as client:
                await client.write_event(Transcribe().event())
                await send_audio(client, long_wait, PIPELINE_RATE_HZ)
                refused = await read(client)
        return heard, refused

    heard, refused = asyncio.run(main())
    assert heard is not None and (heard.type, heard.data["name"]) == ("detection", "hey_jarvis")
    assert refused is not None and (refused.type, refused.data["code"]) == ("error", "too-long")


def test_a_stop_word_is_neither_advertised_nor_detected_as_a_wake_word(
    engines: Engines, tts: PiperTts, models_dir: Path
) -> None:
    """[[wake.words]] with action stop are heard by the same detector as the wake word:
    Home Assistant was offered "Alexa" as a wake word and woke when it was said."""
    import dataclasses

    from voiced.engines.loader import make_wake_detector, resolve_model_paths
    from voiced.models.manifest import Role
    from voiced.settings import WakeSettings, WakeWordSettings

    settings = dataclasses.replace(
        wyoming_settings(), wake=WakeSettings(words=(WakeWordSettings("alexa", "stop"),))
    )
    wake_paths = resolve_model_paths(settings, models_dir, {Role.WAKE})
    paths = dataclasses.replace(engines.paths, wake_words=wake_paths.wake_words)
    with_stop = dataclasses.replace(engines, paths=paths, wake=make_wake_detector(settings, paths))
    stop = compose(tts, [0.5, "Alexa.", 1.0])

    async def main() -> tuple[Info, str]:
        async with running_voiced(with_stop, settings) as voiced:
            async with client_of(voiced) as client:
                await client.write_event(Describe().event())
                info = Info.from_event((await read_until(client, "info"))[-1])
            async with client_of(voiced) as client:
                await client.write_event(Detect(names=["hey_jarvis"]).event())
                await send_audio(client, stop, PIPELINE_RATE_HZ)
                answer = await read(client)
                assert answer is not None
        return info, f"{answer.type}:{answer.data.get('name', '')}"

    info, answer = asyncio.run(main())
    assert [m.name for program in info.wake for m in program.models] == ["hey_jarvis"]
    assert answer == "not-detected:"


def test_a_request_waiting_for_its_engine_is_not_closed_as_idle(
    engines: Engines, tts: PiperTts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client says nothing while its request waits (up to queue_wait_s, 300 s at most)
    and runs: the idle timeout closed it and dropped the request half-way."""
    monkeypatch.setattr("voiced.wyoming.peer.IDLE_TIMEOUT_S", 0.5)
    speech = compose(tts, [0.3, "What time is it?", 0.5])

    async def main() -> Event | None:
        async with running_voiced(engines, wyoming_settings(queue_wait_s=10)) as voiced:
            services = voiced.server.offered.services
            assert services is not None
            held = asyncio.Event()

            async def another_request() -> None:
                async with services.asr_slot.hold():
                    held.set()
                    await asyncio.sleep(2.0)

            other = asyncio.create_task(another_request())
            await held.wait()
            async with client_of(voiced) as client:
                await client.write_event(Transcribe().event())
                await send_audio(client, speech, PIPELINE_RATE_HZ)
                answer = await read(client)
            await other
            return answer

    answer = asyncio.run(main())
    assert answer is not None and answer.type == "transcript"
    assert "time" in normalize(answer.data["text"])


def test_handle_requests_from_several_connections_run_one_at_a_time(engines: Engines) -> None:
    """Each connection's transcript went straight to the assistant: eight peers had
    eight asks in the language model's queue at once, and a local turn waited behind
    them all. One Wyoming handle request runs at a time, the others wait their turn."""

    async def main() -> tuple[int, list[str]]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            assistant = voiced.assistant
            ask = assistant.ask
            in_flight, most = 0, 0

            async def counted(text: str, *, speak: bool) -> object:
                nonlocal in_flight, most
                in_flight += 1
                most = max(most, in_flight)
                try:
                    return await ask(text, speak=speak)
                finally:
                    in_flight -= 1

            assistant.ask = counted  # type: ignore[method-assign]

            async def one() -> str:
                async with client_of(voiced) as client:
                    text = "Turn the volume down."
                    await client.write_event(Event(type="transcript", data={"text": text}))
                    answer = await read(client)
                    assert answer is not None
                    return answer.type

            answers = await asyncio.gather(*(one() for _ in range(4)))
            return most, list(answers)

    most, answers = asyncio.run(main())
    assert answers == ["handled"] * 4
    assert most == 1
