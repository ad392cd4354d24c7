"""Several wake-word detectors heard as one: engine `both`, and the seam for more
than one wake word at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiced.engines.wake_names import WAKE


class Detector(Protocol):
    engine: str
    name: str

    def process(self, pcm: bytes) -> bool: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Detection:
    word: str
    """``engine:model``, e.g. ``open:hey_jarvis``."""
    action: str
    """What the word is for: ``wake`` (listen for a request), or another action such as
    ``stop`` (end a reply or a ringing timer without the wake word)."""


class WakeSet:
    """Fires when any of its detectors fires. Every detector is fed every frame (each
    keeps its own stream state); after a detection the refractory period holds for
    all of them, so two engines hearing the same "hey jarvis" wake once.

    Each word may have its own action (``actions``: model name -> action, default
    ``wake``); an openWakeWord detector with several models scores them all off one
    feature stream and says which fired."""

    engine = "both"

    def __init__(
        self, detectors: Sequence[Detector], *, refractory_ms: int,
        actions: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.detectors = list(detectors)
        self.name = "+".join(f"{d.engine}:{d.name}" for d in self.detectors)
        self.refractory_ms = refractory_ms
        self.actions = dict(actions or {})
        self.fired: tuple[str, ...] = ()
        """``engine:name`` of each word that fired on the last frame that woke."""
        self.detections: tuple[Detection, ...] = ()
        """The words that fired on the last frame that woke, with their actions."""
        self._quiet_ms = float(refractory_ms)

    def process(self, pcm: bytes) -> bool:
        fired = tuple(
            f"{d.engine}:{word}"
            for d in self.detectors
            if d.process(pcm)
            for word in getattr(d, "fired", (d.name,))
        )
        self._quiet_ms += len(pcm) / SAMPLE_WIDTH_BYTES / PIPELINE_RATE_HZ * 1000
        if not fired or self._quiet_ms < self.refractory_ms:
            return False
        self.fired = fired
        self.detections = tuple(
            Detection(word, self.actions.get(word.split(":", 1)[1], WAKE)) for word in fired
        )
        self._quiet_ms = 0.0
        return True

    @property
    def action(self) -> str:
        """The last detection's action; ``wake`` wins when words for several fired."""
        actions = {d.action for d in self.detections}
        return WAKE if WAKE in actions or not actions else min(actions)

    def reset(self) -> None:
        for detector in self.detectors:
            detector.reset()
        self._quiet_ms = float(self.refractory_ms)
