"""Getting source files out of registry wheels, with pip and a local wheel cache.

pip downloads one wheel without its dependencies (some model packages depend on
source builds such as llama-cpp-python, which we never want). Wheels stay in the
cache so a corrupted model can be rebuilt offline.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import IO

from voiced.errors import ModelError
from voiced.models.manifest import SourceFile

PIP_TIMEOUT_S = 60 * 30


def _wheel_glob(package: str, version: str) -> str:
    # Wheel file names normalise '-' and '.' in the project name to '_'.
    return re.sub(r"[-_.]+", "_", package) + f"-{version}-*.whl"


def cached_wheel(cache_dir: Path, package: str, version: str) -> Path | None:
    found = sorted((cache_dir / "wheels").glob(_wheel_glob(package, version)))
    return found[0] if found else None


def download_wheel(cache_dir: Path, package: str, version: str) -> Path:
    """The wheel of ``package==version`` from the cache, else downloaded into it."""
    wheel = cached_wheel(cache_dir, package, version)
    if wheel is not None:
        return wheel
    wheels_dir = cache_dir / "wheels"
    try:
        wheels_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(
            f"cannot create the wheel cache {wheels_dir}: {err.strerror}",
            fix="set VOICED_CACHE_DIR to a writable directory",
        ) from err
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--dest", str(wheels_dir),
        f"{package}=={version}",
    ]  # fmt: skip
    print(f"  downloading {package}=={version} ...", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=PIP_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise ModelError(f"downloading {package}=={version} timed out") from err
    wheel = cached_wheel(cache_dir, package, version)
    if result.returncode != 0 or wheel is None:
        tail = " ".join(line.strip() for line in result.stderr.splitlines()[-3:])
        raise ModelError(
            f"could not download {package}=={version} and the wheel cache "
            f"{wheels_dir} does not hold it (pip: {tail or 'no output'})",
            fix="connect to the package registry, or copy the wheel into "
            f"{wheels_dir} (`pip download --no-deps {package}=={version}` on another machine)",
        )
    return wheel


def installed_file(source: SourceFile) -> Path:
    """A file shipped inside an installed runtime dependency."""
    try:
        dist = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelError(
            f"{source.package} is not installed", fix=f"pip install '{source.requirement}'"
        ) from err
    return Path(str(dist.locate_file(source.path)))


def open_member(wheel: Path, member: str) -> tuple[IO[bytes], int]:
    """A reader for ``member`` inside ``wheel`` and its uncompressed size in bytes.

    A damaged archive raises ``zipfile.BadZipFile`` (here or while reading) so the
    caller can fetch the wheel again.
    """
    try:
        archive = zipfile.ZipFile(wheel)
        return archive.open(member), archive.getinfo(member).file_size
    except (KeyError, OSError) as err:
        raise ModelError(
            f"{wheel} is damaged or lacks {member}: {err}",
            fix=f"delete {wheel} and prepare again",
        ) from err
