"""Speech/non-speech decisions per 10 ms pipeline frame, from WebRTC's VAD."""

from __future__ import annotations

from typing import Any

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiced.errors import ConfigError, EngineError

FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH_BYTES


class WebRtcVad:
    """``webrtcvad.Vad`` for 10 ms frames of 16 kHz mono int16.

    ``aggressiveness`` runs from 0 (keeps the most audio as speech) to 3 (the
    most eager to call audio non-speech). Cheap (microseconds per frame): it is
    called on the event loop.
    """

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(
                f"VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}",
                fix="set vad aggressiveness to an integer from 0 to 3",
            )
        self.aggressiveness = aggressiveness
        self._vad: Any = _load_webrtcvad().Vad(aggressiveness)

    def is_speech(self, pcm: bytes) -> bool:
        """Whether one 10 ms frame (320 bytes) holds speech."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"the VAD takes 10 ms frames of {FRAME_BYTES} bytes, got {len(pcm)}")
        return bool(self._vad.is_speech(pcm, PIPELINE_RATE_HZ))


def _load_webrtcvad() -> Any:
    try:
        import webrtcvad
    except ImportError as err:
        raise EngineError(
            f"the WebRTC VAD is not installed ({err})",
            fix="pip install 'webrtcvad-wheels>=2.0.14,<3'",
        ) from err
    return webrtcvad
