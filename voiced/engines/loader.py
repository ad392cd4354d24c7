"""The one place that turns the manifest and the settings into loaded engines.

Every path is checked before anything loads, and a missing one is reported with
the path and the command that fixes it. Nothing here reaches a network: every
engine is given a local path.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from pathlib import Path

from voiced.engines.asr import WhisperAsr
from voiced.engines.base import WakeWord
from voiced.engines.slm import SlmEngine
from voiced.engines.tts import PiperTts
from voiced.engines.wake import WakeWordDetector
from voiced.engines.wake_names import BUILTIN, MANIFEST_MODEL, wake_model_problem
from voiced.engines.wake_open import OpenWakeWordDetector
from voiced.engines.wake_set import WakeSet
from voiced.errors import ModelError
from voiced.models.manifest import Role, load_manifest
from voiced.models.store import require_model_dir
from voiced.models.tiers import resolve_slm_model
from voiced.settings import Settings


@dataclass(frozen=True, slots=True)
class ExtraWord:
    """A [[wake.words]] entry's model file for one engine, and what it is for."""

    engine: str
    path: Path
    action: str


@dataclass(frozen=True, slots=True)
class ModelPaths:
    asr: Path
    tts: Path
    """The Piper .onnx file (its .onnx.json beside it)."""
    slm: Path
    wake: dict[str, Path] = field(default_factory=dict)
    """Wake engine (micro, open) -> its model: a microWakeWord .json, an openWakeWord
    .tflite (``both`` has one of each)."""
    wake_features: Path | None = None
    """The directory of openWakeWord's shared melspectrogram and embedding models."""
    names: dict[str, str] = field(default_factory=dict)
    """Role -> model name or user path, for status reports."""
    wake_words: tuple[ExtraWord, ...] = ()
    """The [[wake.words]] beside the wake word (``both``: one per engine each)."""


def _own_path(value: str, role: str, key: str) -> Path:
    try:
        path = Path(value).expanduser()
        exists = path.exists()
    except (RuntimeError, ValueError, OSError) as err:  # ~nouser, a NUL, a loop
        raise ModelError(
            f"{role} model path {value!r:.80} (config key {key}): {err}", fix=f"correct {key}"
        ) from err
    if not exists:
        raise ModelError(
            f"{role} model path {path} (config key {key}) does not exist",
            fix=f"correct {key}, or remove it to use the built-in model",
        )
    return path


def resolve_model_paths(settings: Settings, models_dir: Path, roles: set[Role]) -> ModelPaths:
    """Where each role's files are; raises ModelError naming the path and the fix."""
    manifest = load_manifest()
    unused = Path("/nonexistent")
    paths = {"asr": unused, "tts": unused, "slm": unused}
    names: dict[str, str] = {}
    # role -> (the user's own path, the manifest model, the file inside its directory)
    choices = {
        Role.ASR: (settings.asr.path, settings.asr.model, ""),
        Role.TTS: (settings.tts.path, settings.tts.voice, "voice.onnx"),
        Role.SLM: (settings.slm.path, resolve_slm_model(settings.slm.model, manifest=manifest), ""),
    }
    for role, (own, model, inner) in choices.items():
        if role not in roles:
            continue
        key = role.value
        if own:
            paths[key] = _own_path(own, key.upper(), f"{key}.path")
        else:
            paths[key] = require_model_dir(models_dir, manifest.get(model)) / inner
        names[key] = own or model
    wake: dict[str, Path] = {}
    extra: tuple[ExtraWord, ...] = ()
    features: Path | None = None
    if Role.WAKE in roles:
        wake = _wake_paths(settings.wake.engine, settings.wake.model, models_dir)
        extra = tuple(
            ExtraWord(engine, path, word.action)
            for word in settings.wake.words
            for engine, path in _wake_paths(
                settings.wake.engine, word.model, models_dir, key="wake.words.model").items()
        )  # fmt: skip
        if "open" in wake:
            features = require_model_dir(models_dir, manifest.get(MANIFEST_MODEL["open"]))
        names["wake"] = settings.wake.model
    return ModelPaths(
        names=names, wake=wake, wake_features=features, wake_words=extra, **paths
    )  # fmt: skip


def _wake_paths(
    engine: str, model: str, models_dir: Path, key: str = "wake.model"
) -> dict[str, Path]:
    problem = wake_model_problem(engine, model)
    if problem is not None:
        raise ModelError(f"{key} {model!r:.60}: {problem}", fix=f"change {key}")
    engines = ("micro", "open") if engine == "both" else (engine,)
    suffix = {"micro": ".json", "open": ".tflite"}
    paths: dict[str, Path] = {}
    for name in engines:
        if model in BUILTIN[name]:
            spec = load_manifest().get(MANIFEST_MODEL[name])
            paths[name] = require_model_dir(models_dir, spec) / f"{model}{suffix[name]}"
        else:
            paths[name] = _own_path(model, "wake-word", key)
    return paths


@dataclass(slots=True)
class Engines:
    paths: ModelPaths
    asr: WhisperAsr | None = None
    tts: PiperTts | None = None
    slm: SlmEngine | None = None
    wake: WakeWord | None = None


def load_engines(settings: Settings, models_dir: Path, roles: set[Role]) -> Engines:
    """Load the engines for ``roles`` in parallel threads (blocking; call off the loop)."""
    paths = resolve_model_paths(settings, models_dir, roles)
    engines = Engines(paths=paths)
    loaders = {
        Role.ASR: lambda: WhisperAsr(paths.asr, settings.asr),
        Role.TTS: lambda: PiperTts(paths.tts, settings.tts),
        Role.SLM: lambda: SlmEngine(paths.slm, settings.slm),
        Role.WAKE: lambda: make_wake_detector(settings, paths),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {role: pool.submit(loaders[role]) for role in roles}
        for role, future in futures.items():
            setattr(engines, role.value, future.result())
    warm_up(engines)
    return engines


def warm_up(engines: Engines) -> None:
    """Run each engine once so the first real turn does not pay for lazy setup
    (CTranslate2 allocations, ONNX session warm-up). The replies worth having
    ready are the pipeline's to prepare (it knows the intents; engines do not), in
    voiced.pipeline.clock_phrases."""
    if engines.asr is not None:
        engines.asr.transcribe(bytes(16_000 * 2))
    if engines.tts is not None:
        engines.tts.synthesize_all("Ready.")
    # The language model is warmed by the Responder with the prompt it will use:
    # CTranslate2 keeps every static prompt it has seen (about 14 MB each for the
    # 0.5B model, never freed), so priming another one here would only cost memory.


def make_wake_detector(settings: Settings, paths: ModelPaths) -> WakeSet:
    """The configured wake word (a WakeSet of one detector per engine: ``both`` has
    two, and the set keeps one refractory period across them)."""
    wake = settings.wake
    detectors: list[WakeWordDetector | OpenWakeWordDetector] = []
    extra = {"micro": [w for w in paths.wake_words if w.engine == "micro"],
             "open": [w for w in paths.wake_words if w.engine == "open"]}  # fmt: skip
    if "micro" in paths.wake:
        micro = [(paths.wake["micro"], "wake.model")]
        micro += [(word.path, "wake.words.model") for word in extra["micro"]]
        detectors += [WakeWordDetector(
            path, probability_cutoff=wake.probability_cutoff,
            refractory_ms=wake.refractory_ms, key=key,
        ) for path, key in micro]  # fmt: skip
    if "open" in paths.wake:
        assert paths.wake_features is not None
        # One detector for every openWakeWord model: they share one feature stream.
        detectors.append(OpenWakeWordDetector(
            [paths.wake["open"], *(word.path for word in extra["open"])],
            paths.wake_features, threshold=wake.threshold,
            debounce_ms=wake.debounce_ms, refractory_ms=wake.refractory_ms,
        ))  # fmt: skip
    actions = {word.path.stem: word.action for word in paths.wake_words}
    return WakeSet(detectors, refractory_ms=wake.refractory_ms, actions=actions)
