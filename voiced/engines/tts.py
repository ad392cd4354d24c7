"""Speech synthesis: a Piper voice (ONNX), one chunk per sentence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from voiced.engines.phrase_cache import PhraseCache
from voiced.errors import EngineError, ModelError
from voiced.settings import TtsSettings


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
        self.phrases = PhraseCache()

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
        cacheable = not repeatable and self.phrases.accepts(text)
        cached = self.phrases.get(text) if cacheable else None
        if cached is not None:
            yield from cached
            return
        chunks: list[bytes] = []
        for chunk in self._synthesize_fresh(text, cancel, repeatable=repeatable):
            chunks.append(chunk)
            yield chunk
        if cacheable and not (cancel is not None and cancel.is_set()):
            self.phrases.remember(text, chunks)

    def _synthesize_fresh(
        self, text: str, cancel: threading.Event | None, *, repeatable: bool
    ) -> Iterator[bytes]:
        try:
            config = self.repeatable_config if repeatable else self.syn_config
            for chunk in self.voice.synthesize(text, syn_config=config):
                if cancel is not None and cancel.is_set():
                    return
                yield chunk.audio_int16_bytes
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"speech synthesis failed: {err}") from err

    def prepare_phrases(self, group: str, phrases: Sequence[str]) -> None:
        """Synthesise ``phrases`` now (blocking) and pin them as the whole of
        ``group`` in the phrase cache; a phrase already cached is not redone."""
        prepared: dict[str, list[bytes]] = {}
        for phrase in phrases:
            if not self.phrases.accepts(phrase):
                raise ValueError(f"a prepared phrase must be 1-48 characters: {phrase!r}")
            cached = self.phrases.get(phrase)
            prepared[phrase] = cached or list(
                self._synthesize_fresh(phrase, None, repeatable=False)
            )
        self.phrases.pin(group, prepared)

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
