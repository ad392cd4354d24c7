"""Hostile Wyoming frames: every length capped before it is read, malformed frames
close their connection with an ``error``, and the server and the voice path go on."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wyoming.event import Event, async_read_event

from tests.wyoming_harness import Voiced, client_of, read_until, running_voiced, wyoming_settings
from voiced.engines.loader import Engines
from voiced.wyoming.framing import MAX_HEADER_BYTES, FrameError, read_event

pytestmark = pytest.mark.timeout(240)


def header(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


NESTED = b'{"x": ' + b"[" * 9000 + b"]" * 9000 + b"}"
"""Valid JSON that Python's parser gives up on (RecursionError)."""
MALFORMED: dict[str, bytes] = {
    "huge data_length": header(type="describe", data_length=4_294_967_296),
    "huge payload_length": header(type="audio-chunk", payload_length=1 << 40),
    "negative length": header(type="audio-chunk", payload_length=-1),
    "length as text": header(type="audio-chunk", payload_length="12"),
    "length as bool": header(type="audio-chunk", payload_length=True),
    "truncated payload": header(type="audio-chunk", payload_length=1000) + bytes(10),
    "truncated data": header(type="transcribe", data_length=50) + b'{"lang',
    "truncated header": b'{"type": "ping"',
    "bad JSON header": b"{not json}\n",
    "bad JSON data": header(type="transcribe", data_length=5) + b"{oops",
    "data not an object": header(type="transcribe", data_length=2) + b"[]",
    "inline data not an object": header(type="transcribe", data=[1, 2]),
    "header not an object": b"[1, 2, 3]\n",
    "no type": header(version="1.5.0"),
    "type not text": header(type=5),
    "type with odd characters": header(type="ping\u0000"),
    "deeply nested header": b'{"type": "ping", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
    "deeply nested data": header(type="transcribe", data_length=len(NESTED)) + NESTED,
    "binary garbage": bytes(range(256)) + b"\n",
    "header longer than the cap": b'{"type": "' + b"a" * (2 * MAX_HEADER_BYTES),
}


async def exchange(voiced: Voiced, raw: bytes) -> list[Event]:
    """Send ``raw`` (then end the stream); the events until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", voiced.server.port)
    writer.write(raw)
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    events = []
    async with asyncio.timeout(10):
        try:
            while (event := await async_read_event(reader)) is not None:
                events.append(event)
        except ConnectionResetError:
            pass  # closed without reading what was sent: a reset, closed all the same
    writer.close()
    return events


def test_malformed_frames_close_only_their_connection(engines: Engines) -> None:
    async def main() -> tuple[dict[str, list[Event]], list[str], int]:
        answers = {}
        async with running_voiced(engines, wyoming_settings()) as voiced:
            async with client_of(voiced) as satellite:
                await satellite.write_event(Event(type="run-satellite"))
                frames_before = voiced.assistant.frames_seen
                for name, raw in MALFORMED.items():
                    answers[name] = await exchange(voiced, raw)
                # The satellite's connection and the voice path were never touched.
                await satellite.write_event(Event(type="ping"))
                pong = await read_until(satellite, "pong")
                async with asyncio.timeout(20):  # the microphone is still read
                    while voiced.assistant.frames_seen < frames_before + 100:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                heard = voiced.assistant.frames_seen - frames_before
            async with client_of(voiced) as fresh:
                await fresh.write_event(Event(type="describe"))
                info = await read_until(fresh, "info")
        return answers, [e.type for e in pong + info], heard

    answers, still, heard = asyncio.run(main())
    for name, events in answers.items():
        if name == "truncated header":
            assert [e.type for e in events] in ([], ["error"]), name
            continue
        assert [(e.type, e.data.get("code")) for e in events] == [("error", "bad-frame")], name
    assert still == ["pong", "info"]
    assert heard >= 100


def test_unknown_types_are_ignored_and_bad_fields_answered_with_error(engines: Engines) -> None:
    async def main() -> list[Event]:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await client.write_event(Event(type="frobnicate", data={"x": 1}))
            await client.write_event(Event(type="transcribe"))
            await client.write_event(
                Event(type="audio-chunk", data={"rate": "fast", "width": 2, "channels": 1})
            )
            await client.write_event(Event(type="synthesize", data={"text": 42}))
            await client.write_event(Event(type="synthesize", data={"text": "x" * 6000}))
            await client.write_event(Event(type="timer-started", data={"id": 3}))
            await client.write_event(Event(type="ping"))
            return await read_until(client, "pong")

    events = asyncio.run(main())
    assert [(e.type, e.data.get("code")) for e in events] == [
        ("error", "bad-audio"),
        ("error", "bad-event"),
        ("error", "bad-event"),
        ("pong", None),
    ]


def test_random_bytes_never_crash_the_server(engines: Engines) -> None:
    rng = random.Random(15)

    async def main() -> list[str]:
        async with running_voiced(engines, wyoming_settings()) as voiced:
            for _ in range(40):
                raw = rng.randbytes(rng.randint(1, 4000))
                if rng.random() < 0.5:  # a valid-looking header in front of the noise
                    raw = header(type="audio-chunk", payload_length=rng.randint(0, 1 << 20)) + raw
                await exchange(voiced, raw)
            async with client_of(voiced) as client:
                await client.write_event(Event(type="describe"))
                return [e.type for e in await read_until(client, "info")]

    assert asyncio.run(main()) == ["info"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_the_reader_raises_frame_error_or_returns_an_event(raw: bytes) -> None:
    async def main() -> None:
        reader = asyncio.StreamReader(limit=MAX_HEADER_BYTES)
        reader.feed_data(raw)
        reader.feed_eof()
        try:
            while await read_event(reader) is not None:
                pass
        except FrameError:
            pass

    asyncio.run(main())


def test_the_reader_accepts_inline_data_and_merges_data_length() -> None:
    async def main() -> Event | None:
        reader = asyncio.StreamReader(limit=MAX_HEADER_BYTES)
        data = json.dumps({"text": "hi"}).encode()
        reader.feed_data(
            header(type="synthesize", data={"voice": {"name": "a"}}, data_length=len(data))
            + data
            + header(type="audio-chunk", payload_length=4)
            + b"\x01\x00\x02\x00"
        )
        reader.feed_eof()
        first = await read_event(reader)
        assert first is not None and first.data == {"voice": {"name": "a"}, "text": "hi"}
        return await read_event(reader)

    chunk = asyncio.run(main())
    assert chunk is not None and chunk.payload == b"\x01\x00\x02\x00"


def test_only_allowed_addresses_are_served(engines: Engines) -> None:
    async def main() -> tuple[list[Event], list[Event]]:
        answers = []
        for allow in (("192.0.2.0/24",), ("10.0.0.1", "127.0.0.1")):
            async with running_voiced(engines, wyoming_settings(allow=allow)) as voiced:
                answers.append(await exchange(voiced, header(type="describe")))
        return answers[0], answers[1]

    refused, served = asyncio.run(main())
    assert refused == []  # closed unanswered
    assert [e.type for e in served] == ["info"]


def test_refused_connections_do_not_flood_the_log(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """A host outside wyoming.allow dialling in a loop: one log line, not one each."""

    async def main() -> list[list[Event]]:
        async with running_voiced(engines, wyoming_settings(allow=("192.0.2.0/24",))) as voiced:
            return [await exchange(voiced, header(type="describe")) for _ in range(50)]

    with caplog.at_level("INFO", logger="voiced.wyoming"):
        answers = asyncio.run(main())
    assert answers == [[]] * 50
    refused = [r for r in caplog.records if "not in wyoming.allow" in r.getMessage()]
    assert len(refused) == 1, len(refused)


def test_audio_after_a_wake_streams_stop_is_dropped(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk after audio-stop, while the stop is being answered, reached the
    resampler it had flushed (soxr: "Input after last input"): a traceback in the log
    and the connection dropped. It is dropped; not-detected comes, the connection stays."""
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.ping import Ping
    from wyoming.wake import Detect

    rate = 22050
    silence = bytes(2 * rate // 10)

    async def main() -> list[str]:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await client.write_event(Detect(names=["hey_jarvis"]).event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for _ in range(10):
                await client.write_event(
                    AudioChunk(rate=rate, width=2, channels=1, audio=silence).event()
                )
            await client.write_event(AudioStop().event())
            await asyncio.sleep(0.05)
            await client.write_event(
                AudioChunk(rate=rate, width=2, channels=1, audio=silence).event()
            )
            await client.write_event(Ping().event())
            seen = [e.type for e in await read_until(client, "pong")]
            if "not-detected" not in seen:  # the pong may overtake it
                seen += [e.type for e in await read_until(client, "not-detected")]
            return sorted(seen)

    with caplog.at_level("WARNING"):
        answers = asyncio.run(main())
    assert answers == ["not-detected", "pong"]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_an_audio_start_after_a_wake_streams_stop_is_ignored(engines: Engines) -> None:
    """An audio-start while the stop is being answered replaced the stream the answer
    still used, and a bad one freed the wake-word detector for other connections
    before that answer was done. Until the request is answered it is ignored."""
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.ping import Ping
    from wyoming.wake import Detect

    rate = 22050
    silence = bytes(2 * rate // 10)

    async def main() -> list[str]:
        async with (
            running_voiced(engines, wyoming_settings()) as voiced,
            client_of(voiced) as client,
        ):
            await client.write_event(Detect(names=["hey_jarvis"]).event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for _ in range(10):
                chunk = AudioChunk(rate=rate, width=2, channels=1, audio=silence)
                await client.write_event(chunk.event())
            await client.write_event(AudioStop().event())
            await asyncio.sleep(0.05)
            await client.write_event(AudioStart(rate=5, width=2, channels=1).event())
            await client.write_event(Ping().event())
            seen = [e.type for e in await read_until(client, "pong")]
            if "not-detected" not in seen:  # the pong may overtake it
                seen += [e.type for e in await read_until(client, "not-detected")]
            return sorted(seen)

    assert asyncio.run(main()) == ["not-detected", "pong"]
