"""Check a wake-word .tflite before a wake-word runtime touches it.

Both wake-word packages hand the file straight to the TensorFlow Lite C library
and never look at what comes back: a truncated download, a text file or a model
for the other engine ends the process with a segmentation fault, not an error.
So every model is opened here first, through the same library the engine will
use, and its input tensor compared with what the engine feeds it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiced.errors import ModelError

MAX_MODEL_BYTES = 32 * 1024 * 1024
"""The built-in wake-word models are 0.2-1.3 MB; anything this large is not one."""
TFLITE_IDENTIFIER = b"TFL3"
"""The flatbuffer file identifier, at bytes 4-8 of every .tflite file."""
TFLITE_TYPES = {1: "float32", 3: "uint8", 9: "int8"}
"""TfLiteType values the wake-word engines accept."""


def bundled_library(package_dir: Path, distribution: str, requirement: str) -> Path:
    """The TFLite C library a wake-word package ships in its ``lib/`` folder."""
    lib_dir = package_dir / "lib"
    found = next(iter(sorted(lib_dir.glob("*tensorflowlite_c.*"))), None)
    if found is None:
        raise ModelError(
            f"{distribution} has no TFLite library in {lib_dir}",
            fix=f"pip install --force-reinstall '{requirement}'",
        )
    return found


@dataclass(frozen=True, slots=True)
class TensorShape:
    dims: tuple[int, ...]
    type_name: str


def read_header(path: Path, key: str, fix: str) -> None:
    """The file exists, is a plausible size and says it is a TFLite flatbuffer."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(8)
    except OSError as err:
        raise ModelError(f"cannot read the wake-word model {path} ({key}): {err}", fix=fix) from err
    if not path.is_file():
        raise ModelError(f"the wake-word model {path} ({key}) is not a file", fix=fix)
    if size > MAX_MODEL_BYTES:
        raise ModelError(
            f"the wake-word model {path} ({key}) is {size} bytes; a wake-word model is "
            f"under {MAX_MODEL_BYTES} bytes",
            fix=fix,
        )
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path} ({key}) is not a TensorFlow Lite model", fix=fix)


def input_shape(lib: Any, path: Path, key: str, fix: str) -> TensorShape:
    """Open ``path`` with the engine's TFLite C library (a ctypes handle whose
    argument types the engine package has declared) and return its input tensor's
    shape and type; raises ModelError where the library refuses the file."""
    read_header(path, key, fix)
    model = lib.TfLiteModelCreateFromFile(str(path).encode())
    if not model:
        raise ModelError(f"{path} ({key}) is not a valid TensorFlow Lite model", fix=fix)
    interpreter = None
    try:
        interpreter = lib.TfLiteInterpreterCreate(model, None)
        if not interpreter or lib.TfLiteInterpreterAllocateTensors(interpreter) != 0:
            raise ModelError(f"TensorFlow Lite cannot run {path} ({key})", fix=fix)
        tensor = lib.TfLiteInterpreterGetInputTensor(interpreter, ctypes.c_int32(0))
        dims = tuple(
            int(lib.TfLiteTensorDim(tensor, i)) for i in range(lib.TfLiteTensorNumDims(tensor))
        )
        type_name = TFLITE_TYPES.get(int(lib.TfLiteTensorType(tensor)), "unsupported")
        return TensorShape(dims=dims, type_name=type_name)
    finally:
        if interpreter:
            lib.TfLiteInterpreterDelete(interpreter)
        lib.TfLiteModelDelete(model)


def expect_input(
    shape: TensorShape,
    *,
    last_dim: int,
    types: frozenset[str],
    what: str,
    path: Path,
    key: str,
    fix: str,
) -> None:
    """The model takes (1, frames, ``last_dim``) of one of ``types``: the input the
    engine feeds. Anything else is a model for another engine or another task."""
    fits = len(shape.dims) == 3 and shape.dims[0] == 1 and shape.dims[1] >= 1
    if not fits or shape.dims[2] != last_dim or shape.type_name not in types:
        raise ModelError(
            f"{path} ({key}) is not {what}: its input is {shape.type_name} {list(shape.dims)}, "
            f"{what} takes {'/'.join(sorted(types))} [1, frames, {last_dim}]",
            fix=fix,
        )
