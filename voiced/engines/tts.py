"""Speech synthesis: a Piper voice (ONNX), one chunk per sentence."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from voiced.errors import EngineError, ModelError
from voiced.settings import TtsSettings

PHRASE_MAX_CHARS = 48
"""Replies this short are kept once synthesised: intent replies ("Louder.", "Timer
cancelled.") recur, and replaying them saves the 60-130 ms a synthesis costs."""
PHRASE_CACHE_ENTRIES = 64
"""At most this many phrases (under 3 s of audio each, so under 9 MB in all)."""


class PiperTts:
    """Blocking: iterate ``synthesize`` in a worker thread, never the event loop."""

    def __init__(self, model_path: Path, settings: TtsSettings) -> None:
        from piper import SynthesisConfig

        config_path = Path(f"{model_path}.json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelError(
                    f"Piper voice file {path} is missing",
                    fix="run `voiced models prepare`, or point tts.path at a .onnx "
                    "with its .onnx.json beside it",
                )
        try:
            self.voice = _load_voice(model_path, config_path, use_cuda=settings.use_cuda)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(
                f"cannot load the Piper voice {model_path}: {err}",
                fix="run `voiced models verify`, then `voiced models prepare --force`",
            ) from err
        self.syn_config = SynthesisConfig(length_scale=settings.length_scale)
        # Without sampling noise the same text always gives the same audio: the
        # demo, tests and benchmark synthesise their prompts this way so a run can
        # be repeated on exactly the same input.
        self.repeatable_config = SynthesisConfig(
            length_scale=settings.length_scale, noise_scale=0.0, noise_w_scale=0.0
        )
        self._phrases: OrderedDict[str, list[bytes]] = OrderedDict()
        self._phrases_lock = threading.Lock()

    @property
    def sample_rate_hz(self) -> int:
        rate: int = self.voice.config.sample_rate
        return rate

    def synthesize(
        self, text: str, cancel: threading.Event | None = None, *, repeatable: bool = False
    ) -> Iterator[bytes]:
        """int16 PCM at ``sample_rate_hz``, one chunk per sentence; stops when cancelled.

        Short phrases come from the phrase cache when they were said before.
        """
        cacheable = not repeatable and len(text) <= PHRASE_MAX_CHARS
        cached = self._cached(text) if cacheable else None
        if cached is not None:
            yield from cached
            return
        chunks: list[bytes] = []
        try:
            config = self.repeatable_config if repeatable else self.syn_config
            for chunk in self.voice.synthesize(text, syn_config=config):
                if cancel is not None and cancel.is_set():
                    return
                chunks.append(chunk.audio_int16_bytes)
                yield chunk.audio_int16_bytes
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"speech synthesis failed: {err}") from err
        if cacheable:
            self._remember(text, chunks)

    def prepare_phrases(self, phrases: Sequence[str]) -> None:
        """Synthesise ``phrases`` into the phrase cache now (blocking)."""
        for phrase in phrases:
            for _chunk in self.synthesize(phrase):
                pass

    def _cached(self, text: str) -> list[bytes] | None:
        with self._phrases_lock:
            chunks = self._phrases.get(text)
            if chunks is not None:
                self._phrases.move_to_end(text)
            return chunks

    def _remember(self, text: str, chunks: list[bytes]) -> None:
        with self._phrases_lock:
            self._phrases[text] = chunks
            self._phrases.move_to_end(text)
            while len(self._phrases) > PHRASE_CACHE_ENTRIES:
                self._phrases.popitem(last=False)

    def synthesize_all(self, text: str, *, repeatable: bool = False) -> bytes:
        return b"".join(self.synthesize(text, repeatable=repeatable))


def _load_voice(model_path: Path, config_path: Path, *, use_cuda: bool) -> Any:
    """PiperVoice.load, but with onnxruntime's thread spinning off: spinning
    threads steal the CPU the event loop needs on small boards."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
    config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    session = onnxruntime.InferenceSession(
        str(model_path), sess_options=options, providers=providers
    )
    return PiperVoice(session=session, config=config)
