"""What the pipeline needs from each engine: small Protocols, so the pipeline never
names Piper, faster-whisper or CTranslate2, and tests swap in scripted engines.
Every method here blocks: the pipeline calls it from that engine's worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from voiced.engines.asr import Transcript


class SpeechToText(Protocol):
    def transcribe(
        self, pcm: bytes, *, trimmed: bool | None = None, careful: bool = False,
        abandon: threading.Event | None = None,
    ) -> Transcript:  # fmt: skip
        """16 kHz mono int16 in; raises TranscriptionAbandoned once ``abandon`` is set."""
        ...


class TextToSpeech(Protocol):
    @property
    def sample_rate_hz(self) -> int: ...

    def synthesize(
        self, text: str, cancel: threading.Event | None = None, *, repeatable: bool = False
    ) -> Iterator[bytes]:
        """int16 PCM at ``sample_rate_hz``, one chunk per sentence; stops when cancelled."""
        ...

    def prepare_phrases(self, group: str, phrases: Sequence[str]) -> None:
        """Synthesise ``phrases`` ahead of need and keep them as ``group``."""
        ...


class WakeWord(Protocol):
    def process(self, pcm: bytes) -> bool:
        """Feed 16 kHz mono int16; True when the wake word ended in this audio."""
        ...

    def reset(self) -> None:
        """Forget partial scores (frames were skipped, or a new stream)."""
        ...
