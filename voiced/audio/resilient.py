"""A microphone that survives being unplugged: reopen with backoff, never go deaf.

:class:`ResilientSource` wraps a factory of :class:`AudioSource` s. When the
current source raises AudioError/OSError, or its frames end (a live source
that stops delivering; :class:`SoundcardSource` raises after a stall), it
reports the loss once (``on_lost``), reopens with exponential backoff
(0.5 s doubling to 10 s, on an injectable sleep) and reports ``on_restored``
when frames flow again. With ``exit_after_s`` it gives up after being down
that long and raises AudioError, so the process exits non-zero and systemd
restarts it.

Frames are renumbered: ``start_sample`` keeps counting across reconnects and
never goes backwards. The outage itself counts as elapsed stream time (the
first frame after a reconnect starts where the wall clock says it does), so
the assistant's stream clock, which runs on between frames, is not pulled
back when the microphone returns, and timers stay on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.framing import Clock, Sleep
from voiced.audio.sources import AudioSource
from voiced.errors import AudioError, VoicedError

__all__ = ["ResilientSource"]

_LOGGER = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
STOPPED_REASON = "the audio source stopped delivering frames"
_GIVE_UP_FIX = (
    "check the microphone is plugged in and not held by another program "
    "(arecord -l; fuser -v /dev/snd/*); systemd restarts voiced after this exit"
)


class ResilientSource:
    """An :class:`AudioSource` that reopens the source ``factory`` makes whenever it fails.

    ``on_lost(reason)`` is called once per outage, ``on_restored()`` when the
    first frame of a reopened source arrives. ``reconnects`` counts outages
    that ended with frames flowing again. ``exit_after_s`` (None: retry for
    ever) bounds one outage; past it ``frames()`` raises AudioError.
    """

    def __init__(
        self,
        factory: Callable[[], AudioSource],
        *,
        on_lost: Callable[[str], None] | None = None,
        on_restored: Callable[[], None] | None = None,
        exit_after_s: float | None = None,
        initial_backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        self._factory = factory
        self._on_lost = on_lost
        self._on_restored = on_restored
        self.exit_after_s = exit_after_s
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._clock = clock
        self.reconnects = 0
        """Outages that ended with frames flowing again."""
        self.failed_opens = 0
        """Attempts (first open included) that failed before delivering a frame."""
        self.last_error: str | None = None
        """Why the source was last lost (None until it first is)."""
        self._lost_since: float | None = None
        self._ever_delivered = False
        self._next_sample = 0
        self._last_frame_wall_s: float | None = None
        self._last_frame_start = 0
        self._gap_pending = False
        """Set on a loss: the next frame may start later than the last one ended."""
        self._source: AudioSource | None = None
        self._closed = False

    @property
    def lost(self) -> bool:
        """True during an outage (reported with ``on_lost``, not yet restored)."""
        return self._lost_since is not None

    def down_for_s(self) -> float:
        """How long the current outage has lasted (0 when none)."""
        return 0.0 if self._lost_since is None else self._clock() - self._lost_since

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        """Frames of the current source, renumbered; reopens on failure until closed."""
        backoff_s = self.initial_backoff_s
        try:
            while not self._closed:
                reason, delivered = STOPPED_REASON, False
                try:
                    source = self._source = self._factory()
                    async with contextlib.aclosing(source.frames()) as inner:
                        async for frame in inner:
                            if self._closed:
                                return
                            self._arrived()
                            delivered = True
                            backoff_s = self.initial_backoff_s
                            yield self._renumber(frame)
                except (AudioError, OSError) as err:
                    reason = _describe(err)
                finally:
                    self._release()
                if self._closed:
                    return
                self._mark_lost(reason, delivered=delivered)
                await self._wait(backoff_s, reason)
                backoff_s = min(backoff_s * 2.0, self.max_backoff_s)
        finally:
            self._release()

    def close(self) -> None:
        """Stop delivering frames and close the current source (idempotent)."""
        self._closed = True
        self._release()

    # -- internals ------------------------------------------------------------

    def _arrived(self) -> None:
        """A frame came: end an outage (counted and reported) if one is on."""
        first_ever = not self._ever_delivered
        self._ever_delivered = True
        if self._lost_since is None:
            return
        down_s = self._clock() - self._lost_since
        self._lost_since = None
        if first_ever:
            _LOGGER.info("audio source opened after %.1f s", down_s)
        else:
            self.reconnects += 1
            _LOGGER.warning("audio source restored after %.1f s (reconnect %d)",
                            down_s, self.reconnects)  # fmt: skip
        if self._on_restored is not None:
            self._on_restored()

    def _renumber(self, frame: AudioFrame) -> AudioFrame:
        now = self._clock()
        start = self._next_sample
        if self._last_frame_wall_s is not None:
            elapsed = round((now - self._last_frame_wall_s) * PIPELINE_RATE_HZ)
            by_wall = self._last_frame_start + elapsed // FRAME_SAMPLES * FRAME_SAMPLES
            start = max(start, by_wall) if self._gap_pending else start
        self._gap_pending = False
        self._last_frame_wall_s = now
        self._last_frame_start = start
        self._next_sample = start + frame.num_samples
        if frame.start_sample == start:
            return frame
        return dataclasses.replace(frame, start_sample=start)

    def _mark_lost(self, reason: str, *, delivered: bool) -> None:
        """The current attempt ended: report an outage once, count failed opens."""
        self.last_error = reason
        self._gap_pending = True
        if not delivered:
            self.failed_opens += 1
        if self._lost_since is not None:
            _LOGGER.debug("audio source still unavailable: %s", reason)
            return
        self._lost_since = self._clock()
        _LOGGER.warning("audio source lost: %s; reopening with backoff", reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    async def _wait(self, backoff_s: float, reason: str) -> None:
        """Sleep ``backoff_s`` before the next attempt, or give up past ``exit_after_s``."""
        delay_s = backoff_s
        if self.exit_after_s is not None:
            remaining_s = self.exit_after_s - self.down_for_s()
            if remaining_s <= 0:
                raise AudioError(
                    f"no audio for {self.down_for_s():.1f} s (limit {self.exit_after_s:g} s): "
                    f"{reason}",
                    fix=_GIVE_UP_FIX,
                )
            delay_s = min(delay_s, remaining_s)
        await self._sleep(delay_s)

    def _release(self) -> None:
        source, self._source = self._source, None
        if source is None:
            return
        try:
            source.close()
        except (AudioError, OSError) as err:
            _LOGGER.debug("closing the lost audio source: %s", err)


def _describe(err: BaseException) -> str:
    if isinstance(err, VoicedError):
        return err.message
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
