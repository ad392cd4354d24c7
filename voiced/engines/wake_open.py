"""Wake word: openWakeWord models on pyopen-wakeword's bundled TFLite runtime.

openWakeWord turns audio into a mel spectrogram, the spectrogram into 96-value
speech embeddings (two shared models), and scores each wake word's embeddings
every 80 ms. The shared part is most of the cost, so several wake words run off
one feature stream.
"""

from __future__ import annotations

import ctypes
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiced.engines.tflite_check import bundled_library, expect_input, input_shape, read_header
from voiced.engines.wake_names import OPEN_WAKE_WORDS
from voiced.errors import ModelError

FEATURE_MODELS = ("melspectrogram.tflite", "embedding_model.tflite")
EMBEDDING_FEATURES = 96
SCORE_STEP_MS = 80
"""openWakeWord scores every 1280 samples."""
CHUNK_BYTES = 1280 * SAMPLE_WIDTH_BYTES
"""Audio is handed to the feature models in whole 80 ms steps: the library shifts a
10 s buffer on every call, so fewer, larger calls cost less (2.0 against 2.6 % of
a core on this machine)."""
QUIET_RMS = 16.0
"""An 80 ms step below this RMS (int16; about -66 dBFS, under a real microphone's
noise floor in a quiet room) counts as silence."""
QUIET_GATE_MS = 2000
"""Silence longer than this is not scored. Pauses in speech are far shorter."""
REPLAY_CHUNKS = 28
"""2.24 s: one embedding window (775 ms) and the 16 embeddings a model reads."""
OPEN_FIX = (
    "run `voiced models prepare open-wakeword`, or set wake.model to one of "
    f"{', '.join(OPEN_WAKE_WORDS)} or an openWakeWord .tflite"
)


@dataclass(slots=True)
class _Word:
    name: str
    model: Any
    streak: int = 0
    """Consecutive scores above the threshold."""
    armed: bool = True
    """False from a detection until the score falls back under the threshold: one
    utterance of the word fires once, whatever the refractory period."""
    quiet_ms: float = 0.0
    """Audio since this word last fired (for the refractory period)."""
    peak: float = 0.0
    """Highest score since the last reset (for the benchmark)."""


class OpenWakeWordDetector:
    """Fed pipeline audio in any frame size; says when a wake word was heard.

    Blocking (4.0-4.5 % of one core on a 2-core x86-64 for the shared features
    and one word while there is sound, nothing in a long silence): run it off the
    event loop. The debounce and the refractory
    period are counted in audio, not wall time.
    """

    engine = "open"

    def __init__(
        self,
        model_paths: Sequence[Path],
        features_dir: Path,
        *,
        threshold: float,
        debounce_ms: int,
        refractory_ms: int,
        key: str = "wake.model",
    ) -> None:
        from pyopen_wakeword import OpenWakeWord, OpenWakeWordFeatures
        from pyopen_wakeword.openwakeword import EMB_SHAPE, MEL_SHAPE

        lib_path = _runtime_library_path()
        lib = _runtime_library(lib_path)
        for name in FEATURE_MODELS:
            read_header(features_dir / name, "open-wakeword features", OPEN_FIX)
        for path in model_paths:
            shape = input_shape(lib, path, key, OPEN_FIX)
            expect_input(
                shape,
                last_dim=EMBEDDING_FEATURES,
                types=frozenset({"float32"}),
                what="an openWakeWord model",
                path=path,
                key=key,
                fix=OPEN_FIX,
            )
        self.features = OpenWakeWordFeatures(
            melspectrogram_model=features_dir / FEATURE_MODELS[0],
            embedding_model=features_dir / FEATURE_MODELS[1],
            libtensorflowlite_c_path=lib_path,
        )
        _one_thread(self.features, "mel_", MEL_SHAPE)
        _one_thread(self.features, "emb_", EMB_SHAPE)
        self.words = []
        for path in model_paths:
            model = OpenWakeWord.from_model(path, libtensorflowlite_c_path=lib_path)
            _one_thread(model, "", None)
            self.words.append(_Word(path.stem, model))
        self.name = "+".join(word.name for word in self.words)
        self.wake_word = self.name
        self.threshold = threshold
        self.scores_needed = max(1, math.ceil(debounce_ms / SCORE_STEP_MS))
        self.refractory_ms = refractory_ms
        self.fired: tuple[str, ...] = ()
        """The words that fired on the last call to process()."""
        self._pending = bytearray()
        self._skipped: deque[bytes] = deque(maxlen=REPLAY_CHUNKS)
        self._quiet_run_ms = 0.0
        self.skipped_chunks = 0
        """80 ms steps not scored because the room was silent (for tests and status)."""
        self.reset()

    def process(self, pcm: bytes) -> bool:
        """True when a wake word ended in this audio (``fired`` says which)."""
        self._pending += pcm
        fired: list[str] = []
        while len(self._pending) >= CHUNK_BYTES:
            chunk = bytes(self._pending[:CHUNK_BYTES])
            del self._pending[:CHUNK_BYTES]
            if self._gate(chunk):
                continue
            while self._skipped:  # back from silence: the last 2.24 s first, unscored
                self._features(self._skipped.popleft(), score=False)
            fired += self._features(chunk, score=True)
        self.fired = tuple(dict.fromkeys(fired))
        for word in self.words:
            word.quiet_ms += len(pcm) / SAMPLE_WIDTH_BYTES / PIPELINE_RATE_HZ * 1000
        return bool(self.fired)

    def _gate(self, chunk: bytes) -> bool:
        """True to skip ``chunk``: it is part of a silence that has lasted over
        QUIET_GATE_MS. A quiet room then costs nothing; the skipped audio's last
        REPLAY_CHUNKS are fed (not scored) before the next sound, so the models see
        the same 2.24 s of context as if nothing had been skipped."""
        samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
        quiet = float(np.sqrt(np.mean(samples * samples))) < QUIET_RMS
        self._quiet_run_ms = self._quiet_run_ms + SCORE_STEP_MS if quiet else 0.0
        if self._quiet_run_ms <= QUIET_GATE_MS:
            return False
        self._skipped.append(chunk)
        self.skipped_chunks += 1
        return True

    def _features(self, chunk: bytes, *, score: bool) -> list[str]:
        fired: list[str] = []
        for embeddings in self.features.process_streaming(chunk):
            for word in self.words:
                for value in word.model.process_streaming(embeddings):
                    if score and self._score(word, value):
                        fired.append(word.name)
        return fired

    def _score(self, word: _Word, score: float) -> bool:
        word.peak = max(word.peak, score)
        word.streak = word.streak + 1 if score > self.threshold else 0
        if word.streak == 0:
            word.armed = True
        if not word.armed or word.streak < self.scores_needed:
            return False
        if word.quiet_ms < self.refractory_ms:
            return False
        word.quiet_ms = 0.0
        word.armed = False
        return True

    def reset(self) -> None:
        """Forget partial scores and the refractory period (a new stream, or frames
        were skipped)."""
        self.features.reset()
        # pyopen-wakeword refills 8 s of zeros after a reset: 100 steps of the
        # feature models at the next frame, after every turn (350 ms of CPU here;
        # 2.24 s, what the models read (REPLAY_CHUNKS), takes 120 ms).
        self.features.new_audio_samples = min(
            self.features.new_audio_samples, REPLAY_CHUNKS * CHUNK_BYTES // SAMPLE_WIDTH_BYTES
        )
        self._pending.clear()
        self._skipped.clear()
        self._quiet_run_ms = 0.0
        for word in self.words:
            word.model.reset()
            word.streak = 0
            word.armed = True
            word.quiet_ms = float(self.refractory_ms)
            word.peak = 0.0


def _one_thread(holder: Any, prefix: str, input_shape: tuple[int, ...] | None) -> None:
    """Rebuild ``holder``'s interpreter (pyopen-wakeword's ``<prefix>interpreter``,
    ``<prefix>input_tensor``...) to run on one thread. pyopen-wakeword creates them
    with TFLite's default thread pool: on 2 cores that took 6.3-7.9 % of a core in
    all for one wake word against 3.9 % on one thread, for the same scores."""
    lib = holder.lib
    lib.TfLiteInterpreterOptionsCreate.restype = ctypes.c_void_p
    lib.TfLiteInterpreterOptionsSetNumThreads.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.TfLiteInterpreterOptionsDelete.argtypes = [ctypes.c_void_p]
    options = lib.TfLiteInterpreterOptionsCreate()
    lib.TfLiteInterpreterOptionsSetNumThreads(options, 1)
    interpreter = lib.TfLiteInterpreterCreate(getattr(holder, f"{prefix}model"), options)
    lib.TfLiteInterpreterOptionsDelete(options)  # the interpreter keeps no reference
    if not interpreter:
        raise ModelError("TensorFlow Lite cannot run openWakeWord's models", fix=OPEN_FIX)
    if input_shape is not None:
        dims = (ctypes.c_int32 * len(input_shape))(*input_shape)
        lib.TfLiteInterpreterResizeInputTensor(
            interpreter, ctypes.c_int32(0), dims, ctypes.c_int32(len(input_shape))
        )
    if lib.TfLiteInterpreterAllocateTensors(interpreter) != 0:
        lib.TfLiteInterpreterDelete(interpreter)
        raise ModelError("TensorFlow Lite cannot run openWakeWord's models", fix=OPEN_FIX)
    lib.TfLiteInterpreterDelete(getattr(holder, f"{prefix}interpreter"))
    setattr(holder, f"{prefix}interpreter", interpreter)
    for end, getter in (("input", "GetInputTensor"), ("output", "GetOutputTensor")):
        tensor = getattr(lib, f"TfLiteInterpreter{getter}")(interpreter, ctypes.c_int32(0))
        setattr(holder, f"{prefix}{end}_tensor", tensor)


def _runtime_library_path() -> Path:
    import pyopen_wakeword

    package_dir = Path(pyopen_wakeword.__file__).parent
    return bundled_library(package_dir, "pyopen-wakeword", "pyopen-wakeword==1.1.0")


def _runtime_library(path: Path) -> Any:
    """The TFLite C library with the argument types pyopen-wakeword declares."""
    from pyopen_wakeword.wakeword import TfLiteWakeWord

    return TfLiteWakeWord(path).lib
