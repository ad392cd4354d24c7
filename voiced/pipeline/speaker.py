"""The TTS stage: speakable text chunks in, audio queued on the sink as it is made."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np

from voiced.audio.sinks import AudioSink
from voiced.engines.base import TextToSpeech
from voiced.errors import AudioError, EngineError
from voiced.pipeline.speech_text import clean_for_speech


class Speaker:
    def __init__(
        self, tts: TextToSpeech, sink: AudioSink, executor: concurrent.futures.Executor,
        volume: Callable[[], float],
    ) -> None:  # fmt: skip
        self.tts = tts
        self.sink = sink
        self.executor = executor
        self.volume = volume

    async def speak(
        self, chunks: asyncio.Queue[str | None], on_first_audio: Callable[[], None],
        gate: asyncio.Event, wanted: Callable[[], bool] = lambda: True,
        on_synthesized: Callable[[], None] = lambda: None,
        on_enqueued: Callable[[float], None] = lambda _ms: None,
    ) -> str:  # fmt: skip
        """Synthesise each chunk as it arrives (None ends); returns the text spoken.

        Audio is synthesised at once but played only after ``gate`` is set, so a
        speculative turn has its first clause ready the moment it is committed.
        ``wanted`` is asked before every chunk reaches the sink: after a barge-in it
        says no at once, before the task's cancellation has run. ``on_synthesized``
        is called whenever a chunk's audio is ready or the chunk turned out silent;
        ``on_enqueued`` with the length (ms) of each piece of audio given to the sink.
        """
        spoken: list[str] = []
        first = True
        while (chunk := await chunks.get()) is not None:
            text = clean_for_speech(chunk)
            if not text:
                on_synthesized()
                continue
            async for pcm in self._synthesize(text):
                on_synthesized()
                await gate.wait()
                if not wanted():
                    return " ".join(spoken)
                try:
                    self.sink.enqueue(self._scaled(pcm), self.tts.sample_rate_hz)
                    on_enqueued(len(pcm) * 500.0 / self.tts.sample_rate_hz)
                except OSError as err:
                    raise AudioError(f"the audio output failed: {err}",
                                     fix="check the speaker (voiced devices)") from err  # fmt: skip
                if first:
                    first = False
                    on_first_audio()
            on_synthesized()  # also when a chunk gave no audio at all
            spoken.append(text)
        return " ".join(spoken)

    async def _synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Audio of ``text`` sentence by sentence, synthesised in the TTS thread."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for pcm in self.tts.synthesize(text, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, pcm)
            except EngineError as err:
                loop.call_soon_threadsafe(queue.put_nowait, err)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self.executor, produce)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            await asyncio.shield(future)

    def _scaled(self, pcm: bytes) -> bytes:
        volume = self.volume()
        if volume >= 0.999:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * volume
        scaled: bytes = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
        return scaled
