"""Speech synthesis: a Piper voice (ONNX), one chunk per sentence."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from voiced.errors import EngineError, ModelError
from voiced.settings import TtsSettings


class PiperTts:
    """Blocking: iterate ``synthesize`` in a worker thread, never the event loop."""

    def __init__(self, model_path: Path, settings: TtsSettings) -> None:
        from piper import PiperVoice, SynthesisConfig

        config_path = Path(f"{model_path}.json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelError(
                    f"Piper voice file {path} is missing",
                    fix="run `voiced models prepare`, or point tts.path at a .onnx "
                    "with its .onnx.json beside it",
                )
        try:
            self.voice = PiperVoice.load(model_path, config_path, use_cuda=settings.use_cuda)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(
                f"cannot load the Piper voice {model_path}: {err}",
                fix="run `voiced models verify`, then `voiced models prepare --force`",
            ) from err
        self.syn_config = SynthesisConfig(length_scale=settings.length_scale)

    @property
    def sample_rate_hz(self) -> int:
        rate: int = self.voice.config.sample_rate
        return rate

    def synthesize(self, text: str, cancel: threading.Event | None = None) -> Iterator[bytes]:
        """int16 PCM at ``sample_rate_hz``, one chunk per sentence; stops when cancelled."""
        try:
            for chunk in self.voice.synthesize(text, syn_config=self.syn_config):
                if cancel is not None and cancel.is_set():
                    return
                yield chunk.audio_int16_bytes
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"speech synthesis failed: {err}") from err

    def synthesize_all(self, text: str) -> bytes:
        return b"".join(self.synthesize(text))
