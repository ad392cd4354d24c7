"""Which language model fits a machine: tiers chosen by memory and cores.

``slm.model = "auto"`` (the default) resolves here. The figures behind the
thresholds were measured on a 2-core x86-64 machine (see README, "Language
model tiers"): the large model answers best but needs about 1.9 GB of memory
and, on 2 cores, takes longer to start speaking than the latency target allows;
the medium one fits a 2 GB board beside Whisper and Piper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from voiced.errors import ConfigError
from voiced.models.manifest import Manifest, ModelSpec, Role, load_manifest
from voiced.settings import Settings

AUTO = "auto"
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    model: str
    min_memory_bytes: int
    """Total memory the machine needs for this tier (the whole daemon, not only the model)."""
    min_cores: int


TIERS = (
    Tier("large", "qwen2.5-coder-1.5b-instruct", min_memory_bytes=6 * GIB, min_cores=4),
    Tier("medium", "qwen2.5-coder-0.5b-instruct", min_memory_bytes=3 * GIB // 2, min_cores=1),
    Tier("small", "smollm2-135m-instruct", min_memory_bytes=0, min_cores=1),
)
"""Largest first: the first one the machine meets is chosen."""


@dataclass(frozen=True, slots=True)
class Machine:
    memory_bytes: int
    cores: int


def this_machine() -> Machine:
    """Total memory and usable cores of the machine voiced runs on."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return Machine(memory_bytes=memory, cores=cores)


def tier_for(machine: Machine) -> Tier:
    """The largest tier ``machine`` meets."""
    for tier in TIERS:
        if machine.memory_bytes >= tier.min_memory_bytes and machine.cores >= tier.min_cores:
            return tier
    return TIERS[-1]


def resolve_slm_model(
    model: str, machine: Machine | None = None, manifest: Manifest | None = None
) -> str:
    """``slm.model`` as a manifest name: "auto" becomes the machine's tier's model,
    a tier name ("small", "medium", "large") its model; a manifest name stays."""
    if model == AUTO:
        return tier_for(machine or this_machine()).model
    for tier in TIERS:
        if model == tier.name:
            return tier.model
    known = [m.name for m in (manifest or load_manifest()).models if m.role is Role.SLM]
    if model not in known:
        raise ConfigError(
            f"slm.model {model!r} is not a language model voiced knows",
            fix=f"use auto, small, medium, large or one of: {', '.join(known)}",
        )
    return model


def models_for(settings: Settings, manifest: Manifest | None = None) -> list[ModelSpec]:
    """The manifest models ``settings`` need: what `voiced models prepare` prepares
    when no names are given (a role with its own ``path`` needs none)."""
    manifest = manifest or load_manifest()
    names: list[str] = []
    if not settings.asr.path:
        names.append(settings.asr.model)
    if not settings.tts.path:
        names.append(settings.tts.voice)
    if settings.slm.enabled and not settings.slm.path:
        names.append(resolve_slm_model(settings.slm.model, manifest=manifest))
    names.append(manifest.default_for(Role.WAKE).name)
    return [manifest.get(name) for name in dict.fromkeys(names)]
