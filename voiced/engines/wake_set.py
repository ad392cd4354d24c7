"""Several wake-word detectors heard as one: engine `both`, and the seam for more
than one wake word at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES


class Detector(Protocol):
    engine: str
    name: str

    def process(self, pcm: bytes) -> bool: ...

    def reset(self) -> None: ...


class WakeSet:
    """Fires when any of its detectors fires. Every detector is fed every frame (each
    keeps its own stream state); after a detection the refractory period holds for
    all of them, so two engines hearing the same "hey jarvis" wake once."""

    engine = "both"

    def __init__(self, detectors: Sequence[Detector], *, refractory_ms: int) -> None:
        self.detectors = list(detectors)
        self.name = "+".join(f"{d.engine}:{d.name}" for d in self.detectors)
        self.refractory_ms = refractory_ms
        self.fired: tuple[str, ...] = ()
        """``engine:name`` of each detector that fired on the last frame that woke."""
        self._quiet_ms = float(refractory_ms)

    def process(self, pcm: bytes) -> bool:
        fired = tuple(f"{d.engine}:{d.name}" for d in self.detectors if d.process(pcm))
        self._quiet_ms += len(pcm) / SAMPLE_WIDTH_BYTES / PIPELINE_RATE_HZ * 1000
        if not fired or self._quiet_ms < self.refractory_ms:
            return False
        self.fired = fired
        self._quiet_ms = 0.0
        return True

    def reset(self) -> None:
        for detector in self.detectors:
            detector.reset()
        self._quiet_ms = float(self.refractory_ms)
