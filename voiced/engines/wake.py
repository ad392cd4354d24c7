"""Wake word: microWakeWord models on pymicro-wakeword's TFLite-micro runtime."""

from __future__ import annotations

import json
from pathlib import Path

from voiced.audio.format import FRAME_MS
from voiced.errors import ModelError

BUILTIN_WAKE_WORDS = ("hey_jarvis", "okay_nabu", "hey_mycroft", "alexa")


class WakeWordDetector:
    """Fed 10 ms frames of pipeline audio; says when the wake word was heard.

    Blocking but cheap (about 0.2 % of real time): run it off the event loop.
    The refractory period is counted in audio, not wall time.
    """

    def __init__(
        self, config_path: Path, *, probability_cutoff: float | None, refractory_ms: int
    ) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

        try:
            self.model = MicroWakeWord.from_config(config_path)
            self.wake_word = str(json.loads(config_path.read_text())["wake_word"])
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(
                f"cannot load the wake-word model {config_path}: {err}",
                fix="run `voiced models prepare micro-wakeword`, or set wake.model to "
                f"one of {', '.join(BUILTIN_WAKE_WORDS)} or a microWakeWord .json",
            ) from err
        if probability_cutoff is not None:
            self.model.probability_cutoff = probability_cutoff
        self.features = MicroWakeWordFeatures()
        self.refractory_ms = refractory_ms
        self._quiet_ms = float(refractory_ms)

    def process(self, pcm: bytes) -> bool:
        """True on the frame where the wake word is detected."""
        detected = False
        for features in self.features.process_streaming(pcm):
            if self.model.process_streaming(features) and self._quiet_ms >= self.refractory_ms:
                detected = True
        self._quiet_ms += FRAME_MS * (len(pcm) // 320)
        if detected:
            self._quiet_ms = 0.0
        return detected

    def reset(self) -> None:
        """Forget partial detections and the refractory period (a new stream, or the
        assistant spoke and the next wake word is a new one)."""
        self.model.reset()
        self.features.reset()
        self._quiet_ms = float(self.refractory_ms)
