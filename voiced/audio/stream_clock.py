"""When a sound card's blocks reach the converters, in one clock for both directions.

PortAudio reports, with every callback, when the block's first sample was
captured (input) or will be played (output), in the stream's clock; on ALSA (and
PulseAudio or PipeWire through it) both directions of one process share that
clock, so the microphone's frame and what the speaker played at that moment can
be matched, which is what the echo canceller needs.

The reports are used only to place a stream on that clock, at its start and
after a break; in between, a block's time is where the last one ended, by the
count of samples. The counts are what the echo follows: in the first seconds of a
stream through PulseAudio the microphone's reports drifted from its sample count
by up to 1 ms a second while the echo stayed exactly on the count, and following
the reports moved the echo canceller's reference off the echo by 7 ms in 5 s,
which AEC3 could not follow. Lost samples (an xrun, a dropped block: the caller
says so with ``reset``) and a report further than ``BREAK_S`` from the count (the
clock set) are breaks: the stream is placed afresh there.
"""

from __future__ import annotations

__all__ = ["StreamClock"]

BREAK_S = 0.05
"""A report this far from where the count puts the block is a break."""


class StreamClock:
    """Start times for a stream's consecutive blocks at ``rate_hz``."""

    def __init__(self, rate_hz: int, break_s: float = BREAK_S) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = rate_hz
        self.break_s = break_s
        self._next_s: float | None = None
        """Where the last placed block ended (None: nothing placed, or a break)."""
        self.breaks = 0
        """Blocks placed afresh from their report (the first counts)."""

    def reset(self) -> None:
        """Samples were lost (an xrun, a dropped block): place the next block afresh."""
        self._next_s = None

    def place(self, reported_s: float, num_samples: int) -> float | None:
        """The start time to use for a block PortAudio reported at ``reported_s``;
        None when it reported no time (0: a host API without timing), which also
        breaks the run."""
        if reported_s <= 0.0:
            self._next_s = None
            return None
        start_s = self._next_s
        if start_s is None or abs(reported_s - start_s) > self.break_s:
            start_s = reported_s
            self.breaks += 1
        self._next_s = start_s + num_samples / self.rate_hz
        return start_s
