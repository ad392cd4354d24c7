"""The microphone path ahead of hearing: echo cancellation and noise suppression.

Which canceller is in use is decided once, at start (``[audio] echo_cancel``):
ours (WebRTC AEC3 on the far-end reference the sink's taps give), the
microphone's own (``device``: a ReSpeaker's processed channel, PipeWire's
echo-cancel source), or none. Each frame is cleaned in the listener thread, the
one that runs the wake word and the VAD, so the canceller's state is touched by
one thread only and the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voiced.audio.echo_cancel import (
    CleanFrame,
    DeviceFarEnd,
    FarEnd,
    FarEndReader,
    MicCleaner,
    echo_cancel_problem,
    make_processor,
)
from voiced.audio.format import AudioFrame
from voiced.errors import ConfigError
from voiced.settings import AudioSettings

_LOGGER = logging.getLogger(__name__)
ECHO_CANCELLING_INPUTS = ("echo-cancel", "echo_cancel", "aec", "respeaker")
"""Input names that say the device (or PipeWire's module) cancels the echo itself."""
DELAY_REPORT_STEP_MS = 20.0
"""Log the estimated delay when it first appears and when it moves this much."""


class EchoCanceller(StrEnum):
    """Who cancels the speaker's echo in the microphone."""

    OURS = "voiced"
    DEVICE = "device"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class EchoChoice:
    canceller: EchoCanceller
    reason: str
    """Why, in words (for the log, the status and ``voiced doctor``)."""


def looks_echo_cancelled(microphone: str | None) -> bool:
    """The input's name says it cancels its own echo (PipeWire's echo-cancel source,
    a ReSpeaker USB array, a device named for AEC)."""
    name = (microphone or "").lower()
    return any(word in name for word in ECHO_CANCELLING_INPUTS)


def choose_canceller(
    audio: AudioSettings, *, sink_has_timeline: bool, by_clock: bool = False,
    microphone: str | None = None,
) -> EchoChoice:  # fmt: skip
    """What ``[audio] echo_cancel`` comes to here. ``on`` that cannot be honoured is a
    ConfigError; ``auto`` falls back to none and says why. ``sink_has_timeline``:
    the output says what it played when, by stream position (a time-aligned file)
    or, ``by_clock``, by the sound card's clock, matched with the microphone's.
    ``microphone``: the input's name, when it is a sound card."""
    mode = audio.echo_cancel
    if mode == "off":
        return EchoChoice(EchoCanceller.NONE, "echo_cancel = off")
    if mode == "device":
        return EchoChoice(EchoCanceller.DEVICE, "the microphone cancels its own echo")
    if mode == "auto" and looks_echo_cancelled(microphone):
        # Ours on an already cancelled input would find no echo path, and so never
        # trust speech over a reply.
        reason = f"auto: the input {microphone!r} is named as cancelling its echo"
        return EchoChoice(EchoCanceller.DEVICE, reason)
    problem = echo_cancel_problem()
    if problem is None and not sink_has_timeline:
        problem = ("a sound card plays but a file or stdin is heard: no capture times to "
                   "match what played with")  # fmt: skip
    if problem is None:
        how = "the sound card's clock" if by_clock else "stream position"
        return EchoChoice(EchoCanceller.OURS, f"WebRTC AEC3 on what the sink played, by {how}")
    if mode == "on":
        raise ConfigError(f"[audio] echo_cancel = \"on\", but {problem}",
                          fix="set echo_cancel = \"auto\" or \"off\"")  # fmt: skip
    return EchoChoice(EchoCanceller.NONE, f"auto: {problem}")


ReferenceStart = Callable[[AudioFrame], "int | None"]
"""Where the far end is read for a microphone frame (None: this frame has no place
on the output's timeline, and is heard as the microphone gave it)."""


def by_position(frame: AudioFrame) -> int:
    return frame.start_sample


class MicPath:
    """Cleans each frame (off the loop) and keeps what the status reports."""

    def __init__(
        self, choice: EchoChoice, cleaner: MicCleaner | None,
        executor: concurrent.futures.Executor, *,
        reference_start: ReferenceStart = by_position,
    ) -> None:  # fmt: skip
        self.choice = choice
        self.cleaner = cleaner
        self._executor = executor
        self._reference_start = reference_start
        self._reported_delay_ms: float | None = None
        self._reported_realignments = 0

    @property
    def cancels_echo(self) -> bool:
        """Someone cancels the echo now: the microphone can be trusted during a reply
        and right after it (ours once it has converged)."""
        if self.choice.canceller is EchoCanceller.OURS:
            return self.cleaner is not None and self.cleaner.converged
        return self.choice.canceller is EchoCanceller.DEVICE

    async def clean(self, frame: AudioFrame) -> tuple[AudioFrame, CleanFrame | None]:
        """The frame as hearing should take it: cleaned once the canceller has
        converged (or when it only suppresses noise), else as the microphone gave it."""
        cleaner = self.cleaner
        reference_at = None if cleaner is None else self._reference_start(frame)
        if cleaner is None or reference_at is None:
            return frame, None
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, cleaner.clean, frame.pcm,
                                            reference_at)  # fmt: skip
        self._report_delay()
        if not result.converged:
            return frame, result
        return dataclasses.replace(frame, pcm=result.pcm), result

    @property
    def delay_ms(self) -> float | None:
        """The speaker-to-microphone delay our canceller found (None: none yet)."""
        cleaner = self.cleaner
        delay = None if cleaner is None else cleaner.delay_ms
        if cleaner is None or delay is None:
            return None
        return delay + cleaner.far_end.lead_ms  # found against a reference read that far back

    def _report_delay(self) -> None:
        assert self.cleaner is not None
        moved = self.cleaner.realignments
        if moved != self._reported_realignments:
            self._reported_realignments = moved
            _LOGGER.info("echo canceller: the echo was out of reach; the far end is now "
                         "read %.0f ms back (%d moves)", self.cleaner.far_end.lead_ms,
                         moved)  # fmt: skip
        delay = self.delay_ms
        last = self._reported_delay_ms
        if delay is not None and (last is None or abs(delay - last) >= DELAY_REPORT_STEP_MS):
            self._reported_delay_ms = delay
            _LOGGER.info("speaker-to-microphone delay: %.0f ms (echo canceller: %s)", delay,
                         self.choice.reason)  # fmt: skip

    def status(self) -> dict[str, Any]:
        """For the HTTP status: who cancels, and what ours has measured."""
        out: dict[str, Any] = {"canceller": self.choice.canceller.value,
                               "reason": self.choice.reason}  # fmt: skip
        if self.cleaner is not None:
            delay = self.delay_ms
            out["noise_suppression"] = self.cleaner.noise_suppression
            if self.cleaner.echo_cancel:
                out["delay_ms"] = None if delay is None else round(delay, 1)
                out["residual_db"] = round(self.cleaner.gate.residual_db, 1)
                out["converged"] = self.cleaner.converged
                if self.cleaner.realignments:
                    out["realignments"] = self.cleaner.realignments
        return out


def counts_as_speech(
    vad_speech: bool, clean: CleanFrame | None, *, over_reply: bool, idle: bool = False
) -> bool:
    """Whether a frame the VAD calls speech is the user's. With our canceller
    converged, only if louder than its residual. Before it has converged the
    pipeline hears the raw microphone as it would without one, except that the
    room's echo cannot start anything: speech over a reply does not stop it, and
    idle (no wake word) the reply's tail does not open a turn."""
    if not vad_speech or clean is None:
        return vad_speech
    if clean.converged:
        return clean.above_residual
    return not over_reply and not (idle and clean.echo_possible)


def build_mic_path(
    audio: AudioSettings, sink: object, executor: concurrent.futures.Executor, *,
    microphone: str | None = None,
) -> MicPath:  # fmt: skip
    """The microphone path for these settings, listening to ``sink``'s playback: a
    time-aligned sink's ``taps`` (stream positions) or a sound card's
    ``played_taps`` (its clock, matched with the frames' ``captured_at_s``, which
    only a sound-card ``microphone`` gives: its name, None for a file or stdin)."""
    taps = getattr(sink, "taps", None)
    played_taps = getattr(sink, "played_taps", None)
    card_played = not isinstance(taps, list) and isinstance(played_taps, list)
    by_clock = card_played and microphone is not None
    choice = choose_canceller(audio, sink_has_timeline=isinstance(taps, list) or by_clock,
                              by_clock=by_clock, microphone=microphone)  # fmt: skip
    ours = choice.canceller is EchoCanceller.OURS
    if not ours and not audio.noise_suppression:
        return MicPath(choice, None, executor)
    far_end: FarEndReader
    reference_start: ReferenceStart = by_position
    if ours and by_clock:
        device = DeviceFarEnd()
        played_taps.append(device.played)  # type: ignore[union-attr]
        far_end = device

        def reference_start(frame: AudioFrame) -> int | None:
            at_s = frame.captured_at_s
            return None if at_s is None else device.reference_start(at_s)
    else:
        positions = FarEnd()
        if ours and isinstance(taps, list):
            taps.append(positions.played)
        far_end = positions
    def remake() -> Any:
        return make_processor(echo_cancel=ours, noise_suppression=audio.noise_suppression)

    cleaner = MicCleaner(remake(), far_end, echo_cancel=ours,
                         noise_suppression=audio.noise_suppression,
                         remake=remake if ours and by_clock else None)  # fmt: skip
    return MicPath(choice, cleaner, executor, reference_start=reference_start)
