"""Speech recognition: faster-whisper (CTranslate2) on a local model directory.

Two paths:
- stock: ``WhisperModel.transcribe``, which pads every utterance to a 30 s window;
- trimmed (default): the encoder sees only the utterance plus a margin, which
  makes it several times faster for short commands. Decoding from a short window
  can repeat itself, so it is guarded: a token cap from the audio's duration and
  a repetition check, either of which falls back to the stock path.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiced.audio.format import PIPELINE_RATE_HZ, pcm_to_float32
from voiced.errors import EngineError, ModelError
from voiced.settings import AsrSettings

MIN_AUDIO_SAMPLES = PIPELINE_RATE_HZ // 10
"""Whisper needs some audio; shorter input is padded with silence."""
FULL_WINDOW_FRAMES = 3000
"""Whisper's 30 s window in mel frames (10 ms each)."""
WINDOW_MARGIN_FRAMES = 600
"""Mel frames of zero padding kept after the speech in the trimmed window. Whisper
needs to see some silence after the last word to end cleanly; on 216 Piper
utterances (three speaking rates, two with noise) at beam 3: 300 frames 5.6 % WER,
600 frames 4.0 %, stock 30 s window at beam 1 3.8 %."""
WIDE_MARGIN_FRAMES = 1000
"""The margin for a second, careful pass (3.9 % at beam 3 on the same set, at
about a quarter of the stock window's cost)."""
WINDOW_STEP_FRAMES = 100
TOKENS_PER_SECOND_CAP = 8
"""Speech runs at 3-5 tokens/s; more than this means the decoder is looping."""
NO_SPEECH_MAX = 0.3
"""Above this no-speech probability the trimmed path hears nothing. Prompted with
the command vocabulary, speech scored at most 0.09 on 216 utterances and silence,
noise and hum 0.48-0.88, where they decode to command words ("Volume down.")."""
NO_SPEECH_MAX_UNPROMPTED = 0.6
"""The same without a vocabulary prompt (faster-whisper's threshold; speech scored
at most 0.42, silence and noise at least 0.93)."""


class TranscriptionAbandoned(Exception):
    """The caller stopped wanting the transcript (speech resumed) before decoding."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    audio_ms: float
    compute_ms: float
    trimmed: bool = False
    """True when the trimmed-window path produced it."""


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
        self._prompt, self._suppress, self._tokenizer = self._decoder_setup()
        prompted = bool(settings.vocabulary_prompt.strip())
        self._no_speech_max = NO_SPEECH_MAX if prompted else NO_SPEECH_MAX_UNPROMPTED

    def _decoder_setup(self) -> tuple[list[int], list[int], Any]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        multilingual = self.model.model.is_multilingual
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, multilingual, task="transcribe",
            language=(self.settings.language or "en") if multilingual else None,
        )  # fmt: skip
        # The vocabulary goes in as "previous text", which biases the decoder
        # toward the words commands use ("volume up", heard as "value up" without).
        vocabulary = self.settings.vocabulary_prompt.strip()
        previous = tokenizer.encode(" " + vocabulary) if vocabulary else []
        prompt = self.model.get_prompt(tokenizer, previous, without_timestamps=True)
        return prompt, list(get_suppressed_tokens(tokenizer, (-1,)) or ()), tokenizer

    def transcribe(
        self, pcm: bytes, *, trimmed: bool | None = None, careful: bool = False,
        abandon: threading.Event | None = None,
    ) -> Transcript:  # fmt: skip
        """``careful`` widens the trimmed window's margin: slower, fewer misheard
        endings; for a second pass over an utterance whose first pass looked cut off.
        ``abandon``, set before decoding starts, raises TranscriptionAbandoned: a
        speculative transcript that resumed speech made unwanted frees the thread
        without paying for the decoding (over half the cost)."""
        started = time.perf_counter()
        audio = pcm_to_float32(pcm)
        if audio.size < MIN_AUDIO_SAMPLES:
            audio = np.pad(audio, (0, MIN_AUDIO_SAMPLES - audio.size))
        use_trimmed = self.settings.trim_window if trimmed is None else trimmed
        try:
            margin = WIDE_MARGIN_FRAMES if careful else WINDOW_MARGIN_FRAMES
            text = self._trimmed(audio, margin, abandon) if use_trimmed else None
            if text is None:
                text, use_trimmed = self._stock(audio), False
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"speech recognition failed: {err}") from err
        return Transcript(
            text=text, audio_ms=audio.size * 1000.0 / PIPELINE_RATE_HZ,
            compute_ms=(time.perf_counter() - started) * 1000.0, trimmed=use_trimmed,
        )  # fmt: skip

    def _stock(self, audio: np.ndarray) -> str:
        segments, _info = self.model.transcribe(
            audio, language=self.settings.language or None, beam_size=self.settings.beam_size,
            without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
        )  # fmt: skip
        # The segments are a lazy generator: consume it here, in this thread.
        return "".join(segment.text for segment in segments).strip()

    def _trimmed(
        self, audio: np.ndarray, margin_frames: int, abandon: threading.Event | None
    ) -> str | None:
        """Transcript from a window just long enough for ``audio``; None when unsure."""
        features = self.model.feature_extractor(audio)
        content = features.shape[-1]
        window = -(-(content + margin_frames) // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES
        if window >= FULL_WINDOW_FRAMES:
            return None
        padded = np.zeros((features.shape[0], window), dtype=features.dtype)
        padded[:, :content] = features[:, :window]
        encoded = self.model.encode(padded)
        if abandon is not None and abandon.is_set():
            raise TranscriptionAbandoned
        cap = 6 + int(audio.size / PIPELINE_RATE_HZ * TOKENS_PER_SECOND_CAP)
        result = self.model.model.generate(
            encoded, [self._prompt], beam_size=self.settings.trimmed_beam_size,
            max_length=len(self._prompt) + cap, suppress_blank=True,
            suppress_tokens=self._suppress, return_scores=False, return_no_speech_prob=True,
        )  # fmt: skip
        if result[0].no_speech_prob > self._no_speech_max:
            return ""
        tokens = [t for t in result[0].sequences_ids[0] if t < self._tokenizer.eot]
        if len(tokens) >= cap - 1:
            return None  # ran into the cap: likely looping
        return _cut_repeat(str(self._tokenizer.decode(tokens)).strip())


_WORD = re.compile(r"[\w']+")


def _cut_repeat(text: str) -> str | None:
    """Cut a decoding loop: when the text starts over ("What time is it? What time
    is it"), keep the first copy. None when a loop remains after the cut."""
    words = [(m.start(), m.group().lower()) for m in _WORD.finditer(text)]
    first_end = re.search(r"[.!?](\s|$)", text)
    if first_end is not None:
        rest = [w.lower() for w in _WORD.findall(text[first_end.end() :])]
        if rest and rest == [w for _, w in words[: len(rest)]]:
            return text[: first_end.end()].strip()  # "Light on. Light" -> "Light on."
    head = [w for _, w in words[:3]]
    if len(words) >= 6:
        for index in range(3, len(words) - 2):
            if [w for _, w in words[index : index + 3]] == head:
                text = text[: words[index][0]].strip()
                break
    lowered = [w.lower() for w in _WORD.findall(text)]
    if any(len(set(lowered[i : i + 4])) == 1 for i in range(len(lowered) - 3)):
        return None
    return text
