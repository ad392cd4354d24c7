"""voiced's engines as Wyoming services: the models already loaded, in the threads
they already run in.

The local voice path comes first. Each engine serves one Wyoming request at a
time (EngineSlot), and a request waits while the local session needs that engine
(listening or thinking for speech-to-text; thinking or speaking for speech), for
at most ``wyoming.queue_wait_s``, then is answered ``busy``. So a local turn
waits behind at most one Wyoming request per engine, which is itself bounded
(``wyoming.max_audio_s`` of audio, MAX_SYNTHESIZE_CHARS of text), and a flood
of clients queues behind the slot instead of in the engine's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable

from voiced.engines.base import WakeWord
from voiced.errors import BusyError
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.chunker import ChunkerSettings, SpeechChunker
from voiced.pipeline.speech_text import clean_for_speech
from voiced.pipeline.state import State
from voiced.settings import WyomingSettings
from voiced.wyoming.audio_in import BadRequest

LOCAL_POLL_S = 0.05
MAX_SYNTHESIZE_CHARS = 5000
"""Longer than any reply Home Assistant speaks; a book is refused."""
MAX_HANDLE_CHARS = 2000
"""The same cap as the HTTP and MQTT ``ask`` (voiced.control.surface)."""


class EngineSlot:
    """One Wyoming request at a time for an engine, and only while the local voice
    path does not need it."""

    def __init__(self, local_needs: Callable[[], bool], wait_s: float) -> None:
        self._local_needs = local_needs
        self._wait_s = wait_s
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        deadline = time.monotonic() + self._wait_s
        try:
            await asyncio.wait_for(self._lock.acquire(), self._wait_s)
        except TimeoutError:
            raise BadRequest("busy", "voiced is busy; try again") from None
        try:
            while self._local_needs():
                if time.monotonic() >= deadline:
                    raise BadRequest("busy", "voiced's own turn has the engine; try again")
                await asyncio.sleep(LOCAL_POLL_S)
            yield
        finally:
            self._lock.release()


class Services:
    def __init__(
        self, assistant: Assistant, settings: WyomingSettings, wake: WakeWord | None
    ) -> None:
        self.assistant = assistant
        self.settings = settings
        self.asr_slot = EngineSlot(
            lambda: assistant.state in (State.LISTENING, State.THINKING), settings.queue_wait_s
        )
        self.tts_slot = EngineSlot(
            lambda: assistant.state in (State.THINKING, State.SPEAKING), settings.queue_wait_s
        )
        self.handle_slot = EngineSlot(lambda: False, settings.queue_wait_s)
        """One conversation at a time (the assistant itself refuses one beside a
        local turn): peers' asks must not pile up in the language model's queue."""
        self.wake = wake
        """A detector of its own (stream state is per stream): one stream at a time."""
        self.wake_busy = False
        self._wake_executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="voiced-wyoming-wake")
            if wake is not None
            else None
        )

    # -- speech-to-text ---------------------------------------------------------

    async def transcribe(self, pcm: bytes) -> str:
        """16 kHz mono int16 in, text out, in the ASR thread."""
        engines, workers = self.assistant.engines, self.assistant.workers
        assert engines.asr is not None
        abandon = threading.Event()
        call = functools.partial(engines.asr.transcribe, pcm, careful=True, abandon=abandon)
        async with self.asr_slot.hold():
            try:
                result = await asyncio.get_running_loop().run_in_executor(workers.asr, call)
            except asyncio.CancelledError:
                abandon.set()  # the peer left: the thread skips the decoding if it can
                raise
        return result.text

    # -- text-to-speech ---------------------------------------------------------

    @property
    def tts_rate_hz(self) -> int:
        assert self.assistant.engines.tts is not None
        return self.assistant.engines.tts.sample_rate_hz

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """int16 PCM at ``tts_rate_hz``, the first clause, then sentence by sentence, each
        as soon as it is ready."""
        speakable = clean_for_speech(text)
        if not speakable:
            return
        tts = self.assistant.engines.tts
        assert tts is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        # Cut at the first clause (a comma after three words), then at sentences:
        # the first audio goes out after the first clause is synthesised, and the
        # rest is synthesised while it plays, in natural pauses.
        chunker = SpeechChunker(ChunkerSettings())
        pieces = [*chunker.feed(speakable + " "), *chunker.flush()]

        def produce() -> None:
            try:
                for piece in pieces:
                    for pcm in tts.synthesize(piece, stop):
                        if stop.is_set():
                            return
                        loop.call_soon_threadsafe(queue.put_nowait, pcm)
            except Exception as err:  # noqa: BLE001 - handed to the loop, reported there
                loop.call_soon_threadsafe(queue.put_nowait, err)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        async with self.tts_slot.hold():
            future = loop.run_in_executor(self.assistant.workers.tts, produce)
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise BadRequest("tts-failed", f"speech synthesis failed: {item}")
                    yield item
            finally:
                stop.set()  # a peer that left stops the voice at the next sentence
                await asyncio.shield(future)

    # -- handle -----------------------------------------------------------------

    async def handle(self, text: str) -> str | None:
        """voiced's answer (its intents, else its language model); None when nothing
        answered. Waits while a local turn is in flight, for queue_wait_s."""
        deadline = time.monotonic() + self.settings.queue_wait_s
        async with self.handle_slot.hold():
            while True:
                try:
                    record = await self.assistant.ask(text, speak=False)
                    break
                except BusyError:
                    if time.monotonic() >= deadline:
                        raise BadRequest("busy", "a turn is in progress; try again") from None
                    await asyncio.sleep(LOCAL_POLL_S * 4)
        return (record.reply or None) if record.outcome == "answered" else None

    # -- wake word --------------------------------------------------------------

    def begin_wake(self) -> None:
        """Take the service's detector for one stream (BadRequest busy if in use)."""
        if self.wake is None:
            raise BadRequest("unsupported", "the wake-word service is off")
        if self.wake_busy:
            raise BadRequest("busy", "another wake-word stream is being served")
        self.wake_busy = True
        self.wake.reset()

    def end_wake(self) -> None:
        self.wake_busy = False

    async def detect(self, pcm: bytes) -> bool:
        assert self.wake is not None and self._wake_executor is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._wake_executor, self.wake.process, pcm
        )

    def fired_words(self) -> tuple[str, ...]:
        """Model names of the words the detector heard last (``hey_jarvis``)."""
        fired = getattr(self.wake, "fired", ())
        return tuple(str(word).split(":", 1)[-1] for word in fired)

    def close(self) -> None:
        if self._wake_executor is not None:
            self._wake_executor.shutdown(wait=True, cancel_futures=True)
