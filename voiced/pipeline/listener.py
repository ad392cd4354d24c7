"""Per-frame hearing: wake-word scoring and voice activity, run in one worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from voiced.engines.base import WakeWord
from voiced.engines.wake_names import WAKE
from voiced.engines.wake_set import Detection
from voiced.house.loudness import LoudnessMeter
from voiced.pipeline.quiet import QuietGate
from voiced.pipeline.vad import WebRtcVad


@dataclass(frozen=True, slots=True)
class Heard:
    wake: bool
    """The wake word ended on this frame."""
    speech: bool
    """The frame holds speech (webrtcvad)."""
    quiet: bool = False
    """The frame's level is down at the noise floor (see voiced.pipeline.quiet)."""
    wake_level_db: float = 0.0
    """How loud the wake word was over the room's floor (voiced.house.loudness)."""
    words: tuple[Detection, ...] = ()
    """Words other than the wake word that ended on this frame ([[wake.words]] with
    another action: stop, event)."""

    def has(self, action: str) -> bool:
        return any(word.action == action for word in self.words)


class Listener:
    """Blocking but cheap; the pipeline calls it from its listener thread.

    The caller says which detectors to run on each frame: while the assistant
    speaks it ignores the microphone except for what barge-in needs, so the
    assistant does not trigger on its own voice.
    """

    def __init__(
        self, wake: WakeWord | None, vad: WebRtcVad,
        quiet_gate: QuietGate | None = None, loudness: LoudnessMeter | None = None,
    ) -> None:  # fmt: skip
        """``loudness``: measure each wake word's level, for the house's arbitration
        (None: nobody asks, so nothing is measured on the wake word's audio)."""
        self.wake = wake
        self.vad = vad
        self.quiet_gate = quiet_gate
        self._wake_dirty = False
        self.loudness = loudness
        if wake is not None:
            wake.reset()  # a new stream: nothing carried over from an earlier one

    def hear(self, pcm: bytes, *, score_wake: bool, detect_speech: bool) -> Heard:
        wake = False
        level_db = 0.0
        words: tuple[Detection, ...] = ()
        if self.wake is not None:
            if score_wake and self.loudness is not None:
                self.loudness.feed(pcm)
            if score_wake and self.wake.process(pcm):
                found = getattr(self.wake, "detections", None) or (Detection("", WAKE),)
                wake = any(word.action == WAKE for word in found)
                words = tuple(word for word in found if word.action != WAKE)
                level_db = self.loudness.wake_level_db() if self.loudness else 0.0
            if score_wake:
                self._wake_dirty = True
            elif self._wake_dirty:
                # Frames were skipped: stale partial scores must not join new audio.
                self.wake.reset()
                self._wake_dirty = False
        if not detect_speech:
            return Heard(wake=wake, speech=False, words=words, wake_level_db=level_db)
        quiet = self.quiet_gate is not None and self.quiet_gate.is_quiet(pcm)
        speech = self.vad.is_speech(pcm)
        return Heard(wake=wake, speech=speech, quiet=quiet, words=words, wake_level_db=level_db)
