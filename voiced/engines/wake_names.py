"""The built-in wake words of each engine, and which file types each takes by path.

Kept apart from the engines so settings can check `[wake]` without loading a runtime.
"""

from __future__ import annotations

from pathlib import PurePath

MICRO_WAKE_WORDS = ("hey_jarvis", "okay_nabu", "hey_mycroft", "alexa")
"""microWakeWord's built-in models (pymicro-wakeword 2.5)."""
OPEN_WAKE_WORDS = ("hey_jarvis", "okay_nabu", "hey_mycroft", "alexa", "hey_rhasspy")
"""openWakeWord's built-in models (pyopen-wakeword 1.1)."""
BOTH_WAKE_WORDS = tuple(w for w in MICRO_WAKE_WORDS if w in OPEN_WAKE_WORDS)

BUILTIN = {"micro": MICRO_WAKE_WORDS, "open": OPEN_WAKE_WORDS, "both": BOTH_WAKE_WORDS}
FILE_SUFFIX = {"micro": ".json", "open": ".tflite"}
"""A model of your own: a microWakeWord .json (its .tflite beside it), or an
openWakeWord .tflite. `both` takes built-in names only (one name, two models)."""
MANIFEST_MODEL = {"micro": "micro-wakeword", "open": "open-wakeword"}

WAKE = "wake"
"""A word's action unless told otherwise: start listening."""
STOP = "stop"
"""End the reply, the ringing timer or the turn in flight, without the wake word."""
EVENT = "event"
"""Only tell hooks and MQTT (a ``word-heard`` event)."""
WAKE_ACTIONS = (WAKE, STOP, EVENT)


def word_name(model: str) -> str:
    """What a detector calls the word: a built-in's name, or the file's stem."""
    return PurePath(model).stem if model.endswith(tuple(FILE_SUFFIX.values())) else model


def wake_model_problem(engine: str, model: str) -> str | None:
    """Why ``model`` cannot be used with ``engine``, or None when it can."""
    if model in BUILTIN.get(engine, ()):
        return None
    if "\0" in model:
        return "a path may not hold a NUL character"
    suffix = FILE_SUFFIX.get(engine)
    if suffix is not None and model.endswith(suffix):
        return None
    kind = "an openWakeWord .tflite" if engine == "open" else "a microWakeWord .json"
    own = f", or a path to {kind}"
    return (
        f"with engine {engine!r} the model must be one of {', '.join(BUILTIN.get(engine, ()))}"
        + (own if suffix else "")
    )


def manifest_models(engine: str) -> tuple[str, ...]:
    """The manifest entries an engine's built-in models come from."""
    return tuple(MANIFEST_MODEL.values()) if engine == "both" else (MANIFEST_MODEL[engine],)
