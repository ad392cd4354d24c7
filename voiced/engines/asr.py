"""Speech recognition: faster-whisper (CTranslate2) on a local model directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiced.audio.format import PIPELINE_RATE_HZ, pcm_to_float32
from voiced.errors import EngineError, ModelError
from voiced.settings import AsrSettings

MIN_AUDIO_SAMPLES = PIPELINE_RATE_HZ // 10
"""Whisper needs some audio; shorter input is padded with silence."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    audio_ms: float
    compute_ms: float


class WhisperAsr:
    """Blocking: call ``transcribe`` from a worker thread, never the event loop."""

    def __init__(self, model_dir: Path, settings: AsrSettings) -> None:
        from faster_whisper import WhisperModel

        self.settings = settings
        try:
            self.model = WhisperModel(
                str(model_dir), device=settings.device, compute_type=settings.compute_type,
                cpu_threads=settings.cpu_threads, num_workers=1, local_files_only=True,
            )  # fmt: skip
        except (RuntimeError, ValueError, OSError) as err:
            raise ModelError(
                f"cannot load the Whisper model in {model_dir}: {err}",
                fix="run `voiced models verify`, then `voiced models prepare --force`",
            ) from err

    def transcribe(self, pcm: bytes) -> Transcript:
        started = time.perf_counter()
        audio = pcm_to_float32(pcm)
        if audio.size < MIN_AUDIO_SAMPLES:
            audio = np.pad(audio, (0, MIN_AUDIO_SAMPLES - audio.size))
        try:
            segments, _info = self.model.transcribe(
                audio, language=self.settings.language or None,
                beam_size=self.settings.beam_size, without_timestamps=True,
                condition_on_previous_text=False, vad_filter=False,
            )  # fmt: skip
            # The segments are a lazy generator: consume it here, in this thread.
            text = "".join(segment.text for segment in segments).strip()
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"speech recognition failed: {err}") from err
        return Transcript(
            text=text,
            audio_ms=audio.size * 1000.0 / PIPELINE_RATE_HZ,
            compute_ms=(time.perf_counter() - started) * 1000.0,
        )
