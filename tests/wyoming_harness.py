"""voiced running in-process with its Wyoming server, a live microphone and a
time-aligned speaker, for driving it with the real ``wyoming`` client as Home
Assistant does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from voiced.audio.format import AudioFrame
from voiced.audio.framing import FRAME_BYTES, FramePacer
from voiced.audio.sinks import AlignedSink, MemoryWriter
from voiced.engines.loader import Engines
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event as BusEvent
from voiced.pipeline.events import EventBus
from voiced.pipeline.runner import run_stream
from voiced.settings import Settings, WyomingSettings
from voiced.wyoming.server import WyomingServer, start_wyoming

READ_TIMEOUT_S = 20.0


class Microphone:
    """Silence at 1x, with speech said into it when a test asks."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._closed = False

    def say(self, pcm: bytes) -> None:
        self._pending += pcm

    @property
    def saying(self) -> bool:
        return bool(self._pending)

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        pacer = FramePacer()
        sample = 0
        while not self._closed:
            pcm = bytes(self._pending[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
            del self._pending[:FRAME_BYTES]
            await pacer.wait(sample)
            frame = AudioFrame(pcm, sample)
            sample = frame.end_sample
            yield frame

    def close(self) -> None:
        self._closed = True


@dataclass
class Voiced:
    assistant: Assistant
    server: WyomingServer
    mic: Microphone
    speaker: MemoryWriter
    events: list[BusEvent] = field(default_factory=list)

    def output(self) -> np.ndarray:
        return np.frombuffer(bytes(self.speaker.pcm), dtype="<i2")


def wyoming_settings(**wyoming: object) -> Settings:
    return Settings(wyoming=WyomingSettings(listen="127.0.0.1:0", **wyoming))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_voiced(engines: Engines, settings: Settings) -> AsyncIterator[Voiced]:
    speaker = MemoryWriter()
    bus = EventBus()
    assistant = Assistant(settings, engines, AlignedSink(speaker), bus)
    server = await start_wyoming(assistant, settings, host="127.0.0.1", port=0)
    mic = Microphone()
    voiced = Voiced(assistant, server, mic, speaker)
    bus.add_listener(voiced.events.append)
    feeding = asyncio.create_task(run_stream(assistant, mic, realtime=True))
    try:
        yield voiced
    finally:
        mic.close()
        await asyncio.wait_for(feeding, 30)
        await server.close()
        await assistant.close()


@contextlib.asynccontextmanager
async def client_of(voiced: Voiced) -> AsyncIterator[AsyncTcpClient]:
    client = AsyncTcpClient("127.0.0.1", voiced.server.port)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


async def read(client: AsyncTcpClient, timeout_s: float = READ_TIMEOUT_S) -> Event | None:
    return await asyncio.wait_for(client.read_event(), timeout_s)


async def read_until(
    client: AsyncTcpClient, kind: str, timeout_s: float = READ_TIMEOUT_S
) -> list[Event]:
    """Events up to and including the first of ``kind`` (AssertionError at the end)."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout_s):
        while True:
            event = await client.read_event()
            assert event is not None, f"closed before {kind}; got {[e.type for e in seen]}"
            seen.append(event)
            if event.type == kind:
                return seen


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]
