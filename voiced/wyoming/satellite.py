"""voiced as a Home Assistant satellite: voiced's wake word, microphone and speaker,
Home Assistant's pipeline.

Home Assistant dials in and sends ``run-satellite``; that connection is the
satellite's until it closes (a second one is refused while the first is alive,
and replaces it once the first has been silent longer than Home Assistant's own
5 s ping timeout). On voiced's wake word (voiced.pipeline.assistant asks
``woke``): ``detection{name}``, ``run-pipeline{asr -> tts}``, then the
microphone as ``audio-chunk``s until Home Assistant sends ``transcript``,
``voice-stopped`` or ``error``. Its reply (``audio-start/chunk/stop``, also an
announcement outside a run) plays on voiced's speaker, then ``played`` is sent.
A wake word during that playback stops it (barge-in) and starts a new run.
``pause-satellite`` mutes voiced until ``run-satellite`` (or a local unmute); a
local mute ends a streaming run with ``audio-stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioStop
from wyoming.event import Event
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.snd import Played
from wyoming.wake import Detection

from voiced.audio.format import PIPELINE_RATE_HZ
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event as BusEvent
from voiced.pipeline.events import EventType
from voiced.pipeline.state import State
from voiced.wyoming.audio_in import BadRequest, audio_format
from voiced.wyoming.peer import Peer
from voiced.wyoming.timers import RemoteTimers

_LOGGER = logging.getLogger(__name__)
CHUNK_BYTES = 2048
"""1024 samples of microphone per audio-chunk, as Home Assistant sends its own."""
LIVE_S = 5.0
"""A satellite connection that said nothing for this long is one Home Assistant
has given up on (it drops a satellite after 5 s without an event)."""
MAX_PLAYBACK_S = 600.0
PLAYED_GRACE_S = 2.0
STREAM_ENDS = frozenset({"transcript", "voice-stopped", "error"})
TIMER_EVENTS = frozenset({"timer-started", "timer-updated", "timer-cancelled", "timer-finished"})


class SatelliteLink:
    def __init__(self, assistant: Assistant, wake_names: tuple[str, ...]) -> None:
        self.assistant = assistant
        self.wake_names = wake_names
        self.peer: Peer | None = None
        self.paused = False
        self.muted_by_peer = False
        self.streaming = False
        self.runs = 0
        """Pipeline runs started (detections sent)."""
        self._chunk = bytearray()
        self._stream_start_sample = 0
        listen = assistant.settings.listen
        self._stream_cap_ms = listen.max_speech_ms + listen.no_speech_timeout_ms
        self._playback: _Playback | None = None
        self._played_tasks: dict[asyncio.Task[None], _Playback] = {}
        """Replies that have all arrived, each waiting to play out before `played`."""
        self._queued_until_s = 0.0
        """When Home Assistant's audio queued on the speaker ends (monotonic s): a peer
        sends faster than it plays, and each audio-start would start a fresh cap."""
        self.timers = RemoteTimers(assistant)
        assistant.bus.add_listener(self._on_bus)

    # -- what the assistant asks (voiced.pipeline.remote.RemoteTurns) -------------

    @property
    def engaged(self) -> bool:
        """Home Assistant runs the turns now."""
        return self.peer is not None and not self.peer.closed.is_set() and not self.paused

    @property
    def busy(self) -> bool:
        """A run streams, or Home Assistant's audio plays."""
        return self.streaming or self.playing

    @property
    def playing(self) -> bool:
        """Home Assistant's audio arrives or has not yet played out."""
        return self._playback is not None or bool(self._played_tasks)

    def woke(self, words: tuple[str, ...]) -> None:
        """voiced heard its wake word: a run starts at Home Assistant."""
        peer = self.peer
        if peer is None or self.streaming:
            return
        if self.playing:  # barge-in: the reply stops, `played` goes first, the run starts
            self.assistant.sink.clear()
            for task, draining in self._played_tasks.items():
                draining.played = True  # a wait that ends anyway must not say it again
                task.cancel()
            if self._playback is not None:  # the rest of this reply is dropped as it comes
                self._playback.silent = self._playback.played = True
            peer.offer(Played().event())
        name = next((w for w in words if w in self.wake_names), None) or (
            self.wake_names[0] if self.wake_names else "wake"
        )
        position = self.assistant.position_samples
        peer.offer(Detection(name=name, timestamp=_ms(position)).event())
        peer.offer(RunPipeline(start_stage=PipelineStage.ASR, end_stage=PipelineStage.TTS).event())
        self.streaming = True
        self.runs += 1
        self._stream_start_sample = position
        self._chunk.clear()

    def hear(self, pcm: bytes) -> None:
        """A microphone frame: sent while a run streams."""
        peer = self.peer
        if not self.streaming or peer is None:
            return
        self._chunk += pcm
        if len(self._chunk) >= CHUNK_BYTES:
            audio, self._chunk = bytes(self._chunk), bytearray()
            position = self.assistant.position_samples
            peer.offer(
                AudioChunk(
                    rate=PIPELINE_RATE_HZ, width=2, channels=1, audio=audio, timestamp=_ms(position)
                ).event()
            )
            if _ms(position - self._stream_start_sample) > self._stream_cap_ms:
                _LOGGER.info("wyoming: Home Assistant sent no transcript; ending the run")
                self.stop_streaming(tell=True)

    def stop(self) -> None:
        """voiced's stop word: the run streaming to Home Assistant ends (the speaker
        is cleared by the assistant, and a reply's `played` follows)."""
        self.stop_streaming(tell=True)

    def stop_streaming(self, *, tell: bool) -> None:
        if self.streaming and tell and self.peer is not None:
            self.peer.offer(AudioStop(timestamp=_ms(self.assistant.position_samples)).event())
        self.streaming = False
        self._chunk.clear()

    # -- the connection -------------------------------------------------------------

    def attach(self, peer: Peer) -> bool:
        """``run-satellite`` from ``peer``: True when it is (now) the satellite's."""
        current = self.peer
        if current is not None and current is not peer and not current.closed.is_set():
            if time.monotonic() - current.heard_at_s < LIVE_S:
                return False
            _LOGGER.info(
                "wyoming: %s replaces the silent satellite connection %s", peer.name, current.name
            )
            self.detach(current)
            current.close()
        self.peer = peer
        self.paused = False
        if self.muted_by_peer:
            self.muted_by_peer = False
            if self.assistant.state is State.MUTED:
                self.assistant.set_muted(False)
        _LOGGER.info("wyoming: Home Assistant runs the satellite (%s)", peer.name)
        return True

    def detach(self, peer: Peer) -> None:
        if self.peer is not peer:
            return
        self.stop_streaming(tell=False)
        self._playback = None
        self.peer = None
        _LOGGER.info("wyoming: the satellite connection %s ended", peer.name)

    def on_event(self, peer: Peer, event: Event) -> None:
        """An event on the satellite's connection (BadRequest for a bad one)."""
        kind, data = event.type, event.data
        if kind in STREAM_ENDS:
            self.stop_streaming(tell=False)
        if kind == "pause-satellite":
            self._pause()
        elif kind == "audio-start":
            self._start_playback(data)
        elif kind == "audio-chunk":
            self._play(data, event.payload)
        elif kind == "audio-stop":
            self._finish_playback(peer)
        elif kind in TIMER_EVENTS:
            self.timers.on_event(kind, data)

    def _pause(self) -> None:
        self.paused = True
        self.stop_streaming(tell=False)
        if self.assistant.state is not State.MUTED:
            self.assistant.set_muted(True)
            self.muted_by_peer = True

    def _on_bus(self, event: BusEvent) -> None:
        if event.type is not EventType.MUTED:
            return
        if event.data.get("muted"):
            self.stop_streaming(tell=True)  # mute ends the run Home Assistant has
        else:
            self.muted_by_peer = False

    # -- Home Assistant's audio on voiced's speaker ---------------------------------

    def _start_playback(self, data: dict[str, Any]) -> None:
        rate, _width, channels = audio_format(data)
        audio = self.assistant.settings.audio
        silent = self.assistant.state is State.MUTED and not audio.announce_while_muted
        self._playback = _Playback(rate, channels, silent=silent)

    def _play(self, data: dict[str, Any], payload: bytes | None) -> None:
        playback = self._playback
        if playback is None:
            self._start_playback(data)  # audio without audio-start: its chunk says the format
            playback = self._playback
            assert playback is not None
        rate, _width, channels = audio_format(data)
        if (rate, channels) != (playback.rate_hz, playback.channels):
            raise BadRequest("bad-audio", "a chunk in another format than its audio-start")
        pcm = payload or b""
        pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
        playback.audio_s += len(pcm) / (2 * channels * rate)
        if playback.silent or not pcm or playback.audio_s > MAX_PLAYBACK_S:
            return
        if not self._room_for(len(pcm) / (2 * channels * rate)):
            return
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels).astype(np.float32)
        mono = samples.mean(axis=1) * self.assistant.volume
        out = np.clip(mono, -32768, 32767).astype("<i2").tobytes()
        try:
            self.assistant.sink.enqueue(out, rate)
        except OSError as err:
            _LOGGER.warning("wyoming: the speaker failed: %s", err)
            playback.silent = True

    def _room_for(self, audio_s: float) -> bool:
        """Whether ``audio_s`` more keeps what is queued ahead of the speaker under
        MAX_PLAYBACK_S (a cleared or drained speaker has nothing queued)."""
        now_s = time.monotonic()
        if not self.assistant.sink.is_playing:
            self._queued_until_s = now_s
        end_s = max(self._queued_until_s, now_s) + audio_s
        if end_s - now_s > MAX_PLAYBACK_S:
            return False
        self._queued_until_s = end_s
        return True

    def _finish_playback(self, peer: Peer) -> None:
        """audio-stop: ``played`` once it has played out (at most its length + a grace)."""
        playback, self._playback = self._playback, None
        if playback is None:
            peer.offer(Played().event())
            return
        if playback.played:
            return
        task = asyncio.create_task(self._played_when_drained(peer, playback))
        self._played_tasks[task] = playback
        task.add_done_callback(lambda done: self._played_tasks.pop(done, None))

    async def _played_when_drained(self, peer: Peer, playback: _Playback) -> None:
        if not playback.silent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.assistant.sink.drained(),
                    min(playback.audio_s, MAX_PLAYBACK_S) + PLAYED_GRACE_S,
                )
        if not playback.played:
            playback.played = True
            peer.offer(Played().event())

    async def close(self) -> None:
        for task in list(self._played_tasks):
            task.cancel()
        await asyncio.gather(*self._played_tasks, return_exceptions=True)


class _Playback:
    def __init__(self, rate_hz: int, channels: int, *, silent: bool) -> None:
        self.rate_hz, self.channels, self.silent = rate_hz, channels, silent
        self.audio_s = 0.0
        self.played = False
        """`played` was sent already (a barge-in stopped it)."""


def _ms(samples: int) -> int:
    return samples * 1000 // PIPELINE_RATE_HZ
