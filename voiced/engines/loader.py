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
    features: Path | None = None
    if Role.WAKE in roles:
        wake = _wake_paths(settings.wake.engine, settings.wake.model, models_dir)
        if "open" in wake:
            features = require_model_dir(models_dir, manifest.get(MANIFEST_MODEL["open"]))
        names["wake"] = settings.wake.model
    return ModelPaths(names=names, wake=wake, wake_features=features, **paths)


def _wake_paths(engine: str, model: str, models_dir: Path) -> dict[str, Path]:
    problem = wake_model_problem(engine, model)
    if problem is not None:
        raise ModelError(f"wake.model {model!r:.60}: {problem}", fix="change wake.model")
    engines = ("micro", "open") if engine == "both" else (engine,)
    suffix = {"micro": ".json", "open": ".tflite"}
    paths: dict[str, Path] = {}
    for name in engines:
        if model in BUILTIN[name]:
            spec = load_manifest().get(MANIFEST_MODEL[name])
            paths[name] = require_model_dir(models_dir, spec) / f"{model}{suffix[name]}"
        else:
            paths[name] = _own_path(model, "wake-word", "wake.model")
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
    if "micro" in paths.wake:
        detectors.append(WakeWordDetector(
            paths.wake["micro"], probability_cutoff=wake.probability_cutoff,
            refractory_ms=wake.refractory_ms,
        ))  # fmt: skip
    if "open" in paths.wake:
        assert paths.wake_features is not None
        detectors.append(OpenWakeWordDetector(
            [paths.wake["open"]], paths.wake_features, threshold=wake.threshold,
            debounce_ms=wake.debounce_ms, refractory_ms=wake.refractory_ms,
        ))  # fmt: skip
    return WakeSet(detectors, refractory_ms=wake.refractory_ms)
