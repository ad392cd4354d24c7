"""Wake word: microWakeWord models on pymicro-wakeword's TFLite-micro runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voiced.audio.format import FRAME_MS
from voiced.engines.tflite_check import bundled_library, expect_input, input_shape
from voiced.engines.wake_names import MICRO_WAKE_WORDS
from voiced.errors import ModelError

BUILTIN_WAKE_WORDS = MICRO_WAKE_WORDS
MAX_CONFIG_BYTES = 64 * 1024
MICRO_FEATURES = 40
"""microWakeWord models take int8 frames of 40 spectrogram features."""
MICRO_FIX = (
    "run `voiced models prepare micro-wakeword`, or set wake.model to one of "
    f"{', '.join(BUILTIN_WAKE_WORDS)} or a microWakeWord .json with its .tflite beside it"
)


class WakeWordDetector:
    """Fed 10 ms frames of pipeline audio; says when the wake word was heard.

    Blocking but cheap (about 0.2 % of real time): run it off the event loop.
    The refractory period is counted in audio, not wall time.
    """

    engine = "micro"

    def __init__(
        self,
        config_path: Path,
        *,
        probability_cutoff: float | None,
        refractory_ms: int,
        key: str = "wake.model",
    ) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

        config = read_micro_config(config_path, key)
        tflite = config_path.parent / config["model"]
        # Checked through the runtime's own library before the runtime loads it:
        # pymicro-wakeword does not look at what TFLite returns (a bad file crashes).
        named_by = f"{key}, named by {config_path}"
        shape = input_shape(_runtime_library(), tflite, named_by, MICRO_FIX)
        expect_input(
            shape,
            last_dim=MICRO_FEATURES,
            types=frozenset({"int8", "uint8"}),
            what="a microWakeWord model",
            path=tflite,
            key=named_by,
            fix=MICRO_FIX,
        )
        try:
            self.model = MicroWakeWord.from_config(config_path)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(
                f"cannot load the wake-word model {config_path}: {err}", fix=MICRO_FIX
            ) from err
        self.wake_word = str(config["wake_word"])
        self.name = config_path.stem
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


def _runtime_library() -> Any:
    """pymicro-wakeword's TFLite C library, with its argument types declared."""
    import pymicro_wakeword
    from pymicro_wakeword.wakeword import TfLiteWakeWord

    package_dir = Path(pymicro_wakeword.__file__).parent
    found = bundled_library(package_dir, "pymicro-wakeword", "pymicro-wakeword>=2.5,<3")
    return TfLiteWakeWord(found).lib


def read_micro_config(path: Path, key: str) -> dict[str, Any]:
    """A microWakeWord .json checked field by field, so a wrong file is a ModelError
    naming the field rather than a KeyError (or a crash in the runtime) later."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelError(
                f"{path} ({key}) is larger than {MAX_CONFIG_BYTES} bytes: "
                "not a microWakeWord .json",
                fix=MICRO_FIX,
            )
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelError(
            f"cannot read the wake-word model {path} ({key}): {err}", fix=MICRO_FIX
        ) from err
    micro = config.get("micro") if isinstance(config, dict) else None
    checks: list[tuple[str, bool]] = [
        ("wake_word", isinstance(config, dict) and isinstance(config.get("wake_word"), str)),
        ("model", isinstance(config, dict) and _plain_name(config.get("model"))),
        ("micro", isinstance(micro, dict)),
    ]
    if isinstance(micro, dict):
        cutoff, window = micro.get("probability_cutoff"), micro.get("sliding_window_size")
        checks += [
            ("micro.probability_cutoff", isinstance(cutoff, int | float) and 0 < cutoff < 1),
            (
                "micro.sliding_window_size",
                isinstance(window, int) and not isinstance(window, bool) and 1 <= window <= 100,
            ),
        ]
    for field, ok in checks:
        if not ok:
            raise ModelError(
                f"{path} ({key}) is not a microWakeWord config: `{field}` is missing or wrong",
                fix=MICRO_FIX,
            )
    assert isinstance(config, dict)
    return config


def _plain_name(value: object) -> bool:
    """A file name beside the .json, not a path elsewhere."""
    return isinstance(value, str) and value.endswith(".tflite") and Path(value).name == value
