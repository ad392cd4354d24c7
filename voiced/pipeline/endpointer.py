"""Voice-command endpointing from per-frame VAD decisions and audio durations.

In the spirit of Home Assistant's ``VoiceCommandSegmenter``: fed
``(is_speech, duration_ms, quiet)`` for each frame, it never reads the clock, so
tests feed durations and never sleep. ``quiet`` (the level is at the noise floor)
counts as silence for the speculative end only: the VAD's hangover holds
``is_speech`` for 60-90 ms after the last word, the level falls at once.
Positions are stream samples at 16 kHz, counted from the position given to
:meth:`Endpointer.reset`.

Timeline of one command::

    wake ... speech >= speech_start_ms          -> SPEECH_START
         ... silence or quiet >= speculative_silence_ms -> SPECULATIVE_END (run ASR early)
         ... speech again, not quiet            -> SPEECH_RESUMED (drop that result)
         ... silence >= silence_end_ms          -> SPEECH_END
    or  no speech for timeout_no_speech_ms      -> TIMEOUT
    or  speech_start + max_speech_ms            -> SPEECH_END (forced=True)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum, StrEnum

from voiced.audio.format import PIPELINE_RATE_HZ, ms_to_samples, samples_to_ms
from voiced.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EndpointerSettings:
    """Endpointing thresholds, all in milliseconds of audio."""

    speech_start_ms: float = 60.0
    """Consecutive speech needed to start a command; shorter blips are ignored."""
    silence_end_ms: float = 500.0
    """Silence after speech that commits the end of the command."""
    speculative_silence_ms: float | None = 150.0
    """Silence after which a SPECULATIVE_END lets ASR start early; None disables it."""
    min_speech_ms: float = 300.0
    """Shortest command: no end (speculative or final) before this long after speech start."""
    max_speech_ms: float = 15_000.0
    """Longest command: the end is forced this long after speech start."""
    timeout_no_speech_ms: float | None = 8_000.0
    """Give up (TIMEOUT) when no speech starts this long after reset; None waits forever."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and not value >= 0:
                raise ConfigError(
                    f"endpointer {field.name} must be >= 0, got {value!r}",
                    fix=f"set {field.name} to a duration in milliseconds",
                )
        if self.silence_end_ms <= 0 or self.max_speech_ms <= 0:
            raise ConfigError(
                "endpointer silence_end_ms and max_speech_ms must be > 0",
                fix="set them to durations in milliseconds",
            )
        if self.speculative_silence_ms is not None and not (
            0 < self.speculative_silence_ms < self.silence_end_ms
        ):
            raise ConfigError(
                f"endpointer speculative_silence_ms ({self.speculative_silence_ms}) must be "
                f"between 0 and silence_end_ms ({self.silence_end_ms})",
                fix="lower speculative_silence_ms, or set it to null to disable it",
            )


class EndpointEventType(StrEnum):
    SPEECH_START = "speech-start"
    SPECULATIVE_END = "speculative-end"
    SPEECH_RESUMED = "speech-resumed"
    SPEECH_END = "speech-end"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """Something the endpointer decided, at the end of the frame that decided it."""

    type: EndpointEventType
    position_sample: int
    """Stream position (16 kHz samples) at the end of the deciding frame."""
    speech_start_sample: int | None = None
    """Start of the first frame of the command's speech; None for TIMEOUT."""
    speech_end_sample: int | None = None
    """End of the last speech frame so far; None for TIMEOUT."""
    forced: bool = False
    """SPEECH_END forced by max_speech_ms rather than committed by silence."""

    @property
    def position_ms(self) -> float:
        return samples_to_ms(self.position_sample)

    @property
    def speech_start_ms(self) -> float | None:
        return None if self.speech_start_sample is None else samples_to_ms(self.speech_start_sample)

    @property
    def speech_end_ms(self) -> float | None:
        return None if self.speech_end_sample is None else samples_to_ms(self.speech_end_sample)


class _State(Enum):
    WAITING = "waiting"
    SPEECH = "speech"
    SPECULATIVE = "speculative"
    DONE = "done"


class Endpointer:
    """Segments one voice command; after SPEECH_END or TIMEOUT it ignores input until reset."""

    def __init__(
        self, settings: EndpointerSettings | None = None, *, start_sample: int = 0
    ) -> None:
        self.settings = settings or EndpointerSettings()
        s = self.settings
        self._start = ms_to_samples(s.speech_start_ms)
        self._end = ms_to_samples(s.silence_end_ms)
        self._speculative = (
            None if s.speculative_silence_ms is None else ms_to_samples(s.speculative_silence_ms)
        )
        self._min = ms_to_samples(s.min_speech_ms)
        self._max = ms_to_samples(s.max_speech_ms)
        self._timeout = (
            None if s.timeout_no_speech_ms is None else ms_to_samples(s.timeout_no_speech_ms)
        )
        self.reset(start_sample)

    def reset(self, start_sample: int = 0) -> None:
        """Wait for a new command; positions continue from ``start_sample``."""
        self._state = _State.WAITING
        self._position = start_sample
        self._reset_position = start_sample
        self._run_start: int | None = None
        self._speech_start = start_sample
        self._speech_end = start_sample
        self._voiced_end = start_sample
        """End of the last frame that was speech and not quiet."""
        self._silence = 0

    @property
    def position_sample(self) -> int:
        return self._position

    @property
    def in_speech(self) -> bool:
        """Speech has started and the command has not ended."""
        return self._state in (_State.SPEECH, _State.SPECULATIVE)

    @property
    def done(self) -> bool:
        """SPEECH_END or TIMEOUT happened; call reset() for the next command."""
        return self._state is _State.DONE

    def process(
        self, is_speech: bool, duration_ms: float, *, quiet: bool = False
    ) -> list[EndpointEvent]:
        """One frame's VAD decision, duration and whether its level is at the noise
        floor; returns the events it caused (usually none)."""
        if not duration_ms >= 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms!r}")
        begin = self._position
        self._position += round(duration_ms * PIPELINE_RATE_HZ / 1000)
        if self._state is _State.DONE:
            return []
        if self._state is _State.WAITING:
            return self._process_waiting(is_speech, begin)
        return self._process_speech(is_speech, quiet)

    def _process_waiting(self, is_speech: bool, begin: int) -> list[EndpointEvent]:
        if is_speech:
            if self._run_start is None:
                self._run_start = begin
            if self._position - self._run_start >= self._start:
                self._state = _State.SPEECH
                self._speech_start = self._run_start
                self._speech_end = self._voiced_end = self._position
                self._silence = 0
                return [self._event(EndpointEventType.SPEECH_START)]
        else:
            self._run_start = None
        if self._timeout is not None and self._position - self._reset_position >= self._timeout:
            self._state = _State.DONE
            return [EndpointEvent(EndpointEventType.TIMEOUT, self._position)]
        return []

    def _process_speech(self, is_speech: bool, quiet: bool) -> list[EndpointEvent]:
        events: list[EndpointEvent] = []
        if is_speech:
            self._silence = 0
            self._speech_end = self._position
        else:
            self._silence = self._position - self._speech_end
        if is_speech and not quiet:
            self._voiced_end = self._position
            if self._state is _State.SPECULATIVE:
                self._state = _State.SPEECH
                events.append(self._event(EndpointEventType.SPEECH_RESUMED))
        elapsed = self._position - self._speech_start
        if elapsed >= self._max:
            self._state = _State.DONE
            events.append(self._event(EndpointEventType.SPEECH_END, forced=True))
        elif elapsed < self._min:
            pass
        elif self._silence >= self._end:
            self._state = _State.DONE
            events.append(self._event(EndpointEventType.SPEECH_END))
        elif (
            self._state is _State.SPEECH
            and self._speculative is not None
            and self._position - self._voiced_end >= self._speculative
        ):
            self._state = _State.SPECULATIVE
            events.append(self._event(EndpointEventType.SPECULATIVE_END))
        return events

    def _event(self, kind: EndpointEventType, *, forced: bool = False) -> EndpointEvent:
        return EndpointEvent(
            kind, self._position, self._speech_start, self._speech_end, forced=forced
        )
