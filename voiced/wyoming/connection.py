"""One Wyoming connection's events, routed: ping and describe on any connection;
the satellite's events on the satellite's; a service request on any other.

Home Assistant opens a connection per service request: ``transcribe`` ->
``audio-start`` -> chunks -> ``audio-stop`` (answered ``transcript``);
``synthesize`` (answered ``audio-start/chunk/stop``; ``synthesize-start/chunk/
stop``, which it may send first, are ignored: streaming is not advertised);
``detect`` -> audio (answered ``detection``, or ``not-detected`` at the stop);
``transcript`` (answered ``handled`` or ``not-handled``). An event with bad
fields is answered ``error`` and the connection stays; a malformed frame ends it.
Unknown event types are ignored, as the protocol asks of servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Info
from wyoming.ping import Pong
from wyoming.wake import Detection, NotDetected

from voiced.ratelimit import RateLimitedLog
from voiced.wyoming.audio_in import AudioIn, BadRequest
from voiced.wyoming.framing import FrameError
from voiced.wyoming.peer import Peer
from voiced.wyoming.satellite import SatelliteLink
from voiced.wyoming.services import MAX_HANDLE_CHARS, MAX_SYNTHESIZE_CHARS, Services

_LOGGER = logging.getLogger(__name__)
_ERRORS = RateLimitedLog(_LOGGER)
TTS_CHUNK_SAMPLES = 1024
WAKE_BATCH_BYTES = 960
"""30 ms of pipeline audio per wake-word call, the local hearing's batch."""
MAX_PING_TEXT = 256
MAX_WAKE_SPEED = 4.0
IGNORED = frozenset({"synthesize-start", "synthesize-chunk", "synthesize-stop", "select-program"})


@dataclass(frozen=True, slots=True)
class Offered:
    """What this server serves (None: off)."""

    info: Info
    services: Services | None
    asr: bool
    tts: bool
    wake: bool
    handle: bool
    satellite: SatelliteLink | None
    max_audio_s: float


class Connection:
    def __init__(self, peer: Peer, offered: Offered) -> None:
        self.peer = peer
        self.offered = offered
        self.request: str | None = None
        """transcribe, detect, not-ours (a detect for words we do not have), or
        dropping (a refused request's audio, until its stop)."""
        self.audio: AudioIn | None = None
        self.pcm = bytearray()
        self.detected = False
        self.job: asyncio.Task[None] | None = None
        self.wake_started_s: float | None = None

    async def run(self) -> None:
        peer = self.peer
        try:
            while (event := await peer.read(self._working)) is not None:
                try:
                    await self.dispatch(event)
                except BadRequest as err:
                    await peer.send(Error(text=err.text, code=err.code).event())
                if peer.closed.is_set():
                    break
        except FrameError as err:
            _ERRORS.log(
                logging.WARNING,
                f"frame {peer.name}",
                "wyoming: %s sent a bad frame (%s); closing",
                peer.name,
                err,
            )
            await peer.send(Error(text=f"malformed frame: {err}", code="bad-frame").event())
            await peer.flush()
        except (ConnectionError, OSError) as err:
            _LOGGER.debug("wyoming: %s: %s", peer.name, err)
        finally:
            await self._end()

    def _working(self) -> bool:
        """A request is being answered: the peer waits in silence for it."""
        return self.job is not None and not self.job.done()

    async def _end(self) -> None:
        if self.job is not None:
            self.job.cancel()
            await asyncio.gather(self.job, return_exceptions=True)
        self._end_wake()
        if self.offered.satellite is not None:
            self.offered.satellite.detach(self.peer)
        await self.peer.wait_closed()

    async def dispatch(self, event: Event) -> None:
        kind, data = event.type, event.data
        satellite = self.offered.satellite
        if kind == "ping":
            text = data.get("text")
            await self.peer.send(
                Pong(text=text[:MAX_PING_TEXT] if isinstance(text, str) else None).event()
            )
        elif kind == "describe":
            await self.peer.send(self.offered.info.event())
        elif kind == "run-satellite":
            await self._run_satellite(satellite)
        elif satellite is not None and satellite.peer is self.peer:
            satellite.on_event(self.peer, event)
        elif kind in IGNORED:
            return
        elif kind == "transcribe":
            self._begin("transcribe", self.offered.asr, "speech-to-text")
        elif kind == "detect":
            self._begin_detect(data)
        elif kind == "audio-start":
            if self.request in ("transcribe", "detect") and not self._working():
                self.audio = self._audio_in(data)
        elif kind == "audio-chunk":
            await self._audio_chunk(data, event.payload)
        elif kind == "audio-stop":
            self._audio_stop()
        elif kind == "synthesize":
            self._synthesize(data)
        elif kind == "transcript":
            self._handle(data)
        else:
            _LOGGER.debug("wyoming: %s sent %s; ignored", self.peer.name, kind)

    # -- satellite -----------------------------------------------------------------

    async def _run_satellite(self, satellite: SatelliteLink | None) -> None:
        if satellite is None:
            raise BadRequest("unsupported", "this voiced is not a satellite (wyoming.satellite)")
        if not satellite.attach(self.peer):
            await self.peer.send(
                Error(
                    text="another Home Assistant runs this satellite", code="satellite-busy"
                ).event()
            )
            await self.peer.flush()
            self.peer.close()

    # -- requests ------------------------------------------------------------------

    def _begin(self, request: str, enabled: bool, what: str) -> None:
        if not enabled or self.offered.services is None:
            raise BadRequest("unsupported", f"the {what} service is off")
        if self.job is not None and not self.job.done():
            raise BadRequest("busy", "one request at a time on a connection")
        self._end_wake()
        self.request, self.audio, self.detected = request, None, False
        self.wake_started_s = None
        self.pcm.clear()

    def _begin_detect(self, data: dict[str, Any]) -> None:
        self._begin("detect", self.offered.wake, "wake-word")
        services = self.offered.services
        assert services is not None
        names = data.get("names")
        if names is not None and (
            not isinstance(names, list)
            or len(names) > 16
            or not all(isinstance(n, str) and len(n) <= 64 for n in names)
        ):
            self.request = None
            raise BadRequest("bad-event", "detect names must be a list of up to 16 names")
        if names and not set(names) & set(_wake_names(self.offered.info)):
            self.request = "not-ours"  # none of our words: not-detected at the stop
            return
        try:
            services.begin_wake()
        except BadRequest:
            self.request = "dropping"
            raise

    def _end_wake(self) -> None:
        if self.request == "detect" and self.offered.services is not None:
            self.offered.services.end_wake()

    async def _audio_chunk(self, data: dict[str, Any], payload: bytes | None) -> None:
        if self.request not in ("transcribe", "detect") or (
            self.job is not None and not self.job.done()
        ):
            return  # audio outside a request, of one refused, or after its stop: dropped
        if self.audio is None:
            self.audio = self._audio_in(data)
        try:
            pcm = self.audio.add(data, payload)
        except BadRequest:
            self._end_wake()
            self.request = "dropping"
            raise
        self.pcm += pcm
        if self.request == "detect":
            await self._detect()

    def _audio_in(self, data: dict[str, Any]) -> AudioIn:
        """The request's audio; a wake-word stream is not kept, so it may run for as
        long as the client waits for its wake word, while speech-to-text is capped."""
        cap = self.offered.max_audio_s if self.request == "transcribe" else None
        try:
            return AudioIn.starting(data, max_audio_s=cap)
        except BadRequest:
            self._end_wake()
            self.request = "dropping"
            raise

    async def _detect(self, *, last: bool = False) -> None:
        services = self.offered.services
        assert services is not None and self.audio is not None
        await self._pace_wake()
        while self.request == "detect" and (
            len(self.pcm) >= WAKE_BATCH_BYTES or (last and self.pcm)
        ):
            batch = bytes(self.pcm[:WAKE_BATCH_BYTES])
            del self.pcm[:WAKE_BATCH_BYTES]
            if await services.detect(batch):
                self.detected = True
                words = services.fired_words() or _wake_names(self.offered.info)[:1]
                await self.peer.send(
                    Detection(
                        name=words[0] if words else None, timestamp=int(self.audio.audio_ms)
                    ).event()
                )
                # Heard: the detector is free for the next stream at once (Home
                # Assistant hangs up now; what it already sent is dropped).
                self._end_wake()
                self.request = "dropping"
                self.pcm.clear()
                return

    async def _pace_wake(self) -> None:
        """A wake-word stream is taken at most MAX_WAKE_SPEED times real time: an
        endless stream sent as fast as a peer can must not take the CPU the local
        voice path needs (reading waits, so the peer's socket fills up)."""
        assert self.audio is not None
        now_s = time.monotonic()
        if self.wake_started_s is None:
            self.wake_started_s = now_s
        ahead_s = self.audio.audio_ms / 1000.0 / MAX_WAKE_SPEED - (now_s - self.wake_started_s)
        if ahead_s > 0:
            await asyncio.sleep(ahead_s)

    def _audio_stop(self) -> None:
        request, self.request = self.request, None
        if request == "transcribe":
            if self.audio is not None:
                self.pcm += self.audio.finish()
            pcm = bytes(self.pcm)
            self.pcm.clear()
            self._start_job(self._transcribe(pcm))
        elif request == "detect":
            self.request = "detect"  # released in _finish_detect
            self._start_job(self._finish_detect())
        elif request == "not-ours":
            self._start_job(self.peer.send(NotDetected().event()))

    def _start_job(self, coro: Any) -> None:
        if self.job is not None and not self.job.done():
            coro.close()
            raise BadRequest("busy", "one request at a time on a connection")
        self.job = asyncio.create_task(self._guarded(coro))

    async def _guarded(self, coro: Any) -> None:
        try:
            await coro
        except BadRequest as err:
            await self.peer.send(Error(text=err.text, code=err.code).event())

    async def _transcribe(self, pcm: bytes) -> None:
        services = self.offered.services
        assert services is not None
        text = await services.transcribe(pcm) if pcm else ""
        await self.peer.send(Transcript(text=text).event())

    async def _finish_detect(self) -> None:
        try:
            if self.audio is not None:
                self.pcm += self.audio.finish()
                await self._detect(last=True)
            if not self.detected:
                await self.peer.send(NotDetected().event())
        finally:
            self._end_wake()
            self.request = None
            self.pcm.clear()

    def _synthesize(self, data: dict[str, Any]) -> None:
        if not self.offered.tts or self.offered.services is None:
            raise BadRequest("unsupported", "the text-to-speech service is off")
        text = data.get("text")
        if not isinstance(text, str) or len(text) > MAX_SYNTHESIZE_CHARS:
            raise BadRequest(
                "bad-event",
                f"synthesize text must be a string of at most {MAX_SYNTHESIZE_CHARS} characters",
            )
        self._start_job(self._speak(text))

    async def _speak(self, text: str) -> None:
        services = self.offered.services
        assert services is not None
        rate = services.tts_rate_hz
        started = False
        timestamp_ms = 0
        async for pcm in services.synthesize(text):
            if not started:
                await self.peer.send(AudioStart(rate=rate, width=2, channels=1).event())
                started = True
            step = TTS_CHUNK_SAMPLES * 2
            for offset in range(0, len(pcm), step):
                audio = pcm[offset : offset + step]
                await self.peer.send(
                    AudioChunk(
                        rate=rate, width=2, channels=1, audio=audio, timestamp=timestamp_ms
                    ).event()
                )
                timestamp_ms += len(audio) * 500 // rate
        if not started:  # nothing speakable: an empty stream all the same
            await self.peer.send(AudioStart(rate=rate, width=2, channels=1).event())
        await self.peer.send(AudioStop(timestamp=timestamp_ms).event())

    def _handle(self, data: dict[str, Any]) -> None:
        if not self.offered.handle or self.offered.services is None:
            raise BadRequest("unsupported", "the handle (conversation) service is off")
        text = data.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_HANDLE_CHARS:
            raise BadRequest(
                "bad-event", f"transcript text must be 1 to {MAX_HANDLE_CHARS} characters"
            )
        self._start_job(self._answer(text.strip()))

    async def _answer(self, text: str) -> None:
        services = self.offered.services
        assert services is not None
        reply = await services.handle(text)
        event = Handled(text=reply) if reply else NotHandled(text="voiced has no answer to that")
        await self.peer.send(event.event())


def _wake_names(info: Info) -> list[str]:
    return [model.name for program in info.wake for model in program.models]
