"""The models directory: where prepared models live and how they are checked.

Each prepared model is a directory ``<models_dir>/<name>/`` holding its files and
a stamp, ``voiced-model.json``, written last: a directory without a valid stamp
is never loaded, so an interrupted prepare cannot leave a half model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from voiced.errors import ModelError
from voiced.models.manifest import ModelSpec

STAMP_NAME = "voiced-model.json"
ENV_MODELS_DIR = "VOICED_MODELS_DIR"
ENV_CACHE_DIR = "VOICED_CACHE_DIR"
HASH_BLOCK_BYTES = 1 << 20


def resolve_models_dir(cli_value: str | Path | None = None) -> Path:
    """``--models-dir``, else ``$VOICED_MODELS_DIR``, else the per-user data dir."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("voiced")) / "models"


def resolve_cache_dir() -> Path:
    """Where downloaded wheels are kept (``$VOICED_CACHE_DIR`` or the user cache)."""
    env = os.environ.get(ENV_CACHE_DIR) or os.environ.get("CACHE_DIRECTORY")
    if env:
        return Path(env.split(":")[0]).expanduser()
    return Path(platformdirs.user_cache_dir("voiced"))


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def spec_digest(spec: ModelSpec) -> str:
    """Changes whenever the manifest entry changes, so a new version re-prepares."""
    text = json.dumps(asdict(spec), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Stamp:
    name: str
    spec_digest: str
    files: dict[str, str]
    """Relative path -> sha256 of every file the model directory holds."""
    size_bytes: int
    voiced_version: str


def read_stamp(model_dir: Path) -> Stamp | None:
    try:
        data = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
        return Stamp(
            name=str(data["name"]),
            spec_digest=str(data["spec_digest"]),
            files={str(k): str(v) for k, v in dict(data["files"]).items()},
            size_bytes=int(data["size_bytes"]),
            voiced_version=str(data["voiced_version"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stamp(model_dir: Path, stamp: Stamp) -> None:
    tmp = model_dir / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(asdict(stamp), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(model_dir / STAMP_NAME)


def hash_tree(model_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(model_dir)): sha256_file(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name not in (STAMP_NAME, STAMP_NAME + ".tmp")
    }


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_model(models_dir: Path, spec: ModelSpec, *, full: bool) -> Check:
    """Is ``spec`` prepared and intact? ``full`` re-hashes every file; else sizes only."""
    model_dir = models_dir / spec.name
    stamp = read_stamp(model_dir)
    if stamp is None:
        return Check(spec.name, False, f"not prepared (no {model_dir / STAMP_NAME})")
    if stamp.spec_digest != spec_digest(spec):
        return Check(spec.name, False, "prepared from an older manifest entry")
    size_bytes = 0
    for rel, want in stamp.files.items():
        path = model_dir / rel
        if not path.is_file():
            return Check(spec.name, False, f"missing file {path}")
        size_bytes += path.stat().st_size
        if full and sha256_file(path) != want:
            return Check(spec.name, False, f"sha256 mismatch: {path} is corrupted")
    if size_bytes != stamp.size_bytes:
        return Check(
            spec.name, False,
            f"its files hold {size_bytes} bytes, not {stamp.size_bytes}: one is truncated",
        )  # fmt: skip
    return Check(spec.name, True, f"ok ({stamp.size_bytes / 1e6:.0f} MB)")


def require_model_dir(models_dir: Path, spec: ModelSpec) -> Path:
    """The directory of a prepared model, or a ModelError naming the fix."""
    check = check_model(models_dir, spec, full=False)
    if not check.ok:
        raise ModelError(
            f"model {spec.name!r} in {models_dir / spec.name}: {check.detail}",
            fix=f"run `voiced models prepare {spec.name} --models-dir {models_dir}`",
        )
    return models_dir / spec.name
