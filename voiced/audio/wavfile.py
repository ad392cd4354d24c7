"""WAV files at the edges: decode any PCM/float WAV to pipeline PCM, write pipeline PCM.

Reading uses the stdlib ``wave`` module for plain PCM and a small bounds-checked
RIFF walker for what Python 3.11's ``wave`` refuses (WAVE_FORMAT_EXTENSIBLE, used
by sox/ffmpeg for 24-bit or multichannel files, and IEEE float). Every failure is
an :class:`~voiced.errors.AudioError` that names the file and the fix.
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voiced.audio.format import PIPELINE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiced.audio.resample import StreamResampler
from voiced.errors import AudioError

MAX_DURATION_S = 3600.0
"""Longest file a source accepts; files are decoded into memory at open."""
_BLOCK_FRAMES = 1 << 16
_MIN_RATE_HZ = 1_000
_MAX_RATE_HZ = 768_000
_MAX_CHANNELS = 256
_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_CONVERT_FIX = "convert it with: ffmpeg -i IN.wav -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav"


@dataclass(frozen=True, slots=True)
class WavLayout:
    """How the samples of a WAV data chunk are laid out."""

    rate_hz: int
    channels: int
    sample_width_bytes: int
    is_float: bool
    num_frames: int
    """Frames actually present (header size capped by the file size)."""

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.rate_hz

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width_bytes


class _Malformed(Exception):
    """Internal: the RIFF structure is broken (turned into an AudioError)."""


def read_wav_as_pipeline_pcm(path: Path, *, max_duration_s: float = MAX_DURATION_S) -> bytes:
    """Decode a whole WAV file to pipeline PCM (16 kHz mono int16). Blocking: run in a thread."""
    try:
        with path.open("rb") as f:
            if path.stat().st_size == 0:
                raise AudioError(f"{path} is empty (0 bytes)", fix="record or pick another file")
            layout, read_frames = _open_layout(f, path)
            if layout.duration_s > max_duration_s:
                raise AudioError(
                    f"{path} is {layout.duration_s / 60:.0f} min long; the limit is "
                    f"{max_duration_s / 60:.0f} min",
                    fix="cut it into shorter files (sox IN.wav OUT.wav trim 0 3600)",
                )
            pcm = _decode(layout, read_frames)
    except FileNotFoundError as err:
        raise AudioError(f"WAV file not found: {path}", fix="check the path") from err
    except IsADirectoryError as err:
        raise AudioError(f"{path} is a directory, not a WAV file", fix="name a .wav file") from err
    except (wave.Error, EOFError, struct.error, _Malformed) as err:
        raise AudioError(
            f"{path} is not a readable WAV file ({str(err) or 'truncated'})",
            fix=f"check that it is a complete WAV file, or {_CONVERT_FIX}",
        ) from err
    except OSError as err:
        raise AudioError(
            f"cannot read {path}: {err.strerror or err}", fix="check the file's permissions"
        ) from err
    if not pcm:
        raise AudioError(f"{path} contains no audio (0 frames)", fix="record or pick another file")
    return pcm


def _open_layout(f: BinaryIO, path: Path) -> tuple[WavLayout, Callable[[int], bytes]]:
    size = path.stat().st_size
    try:
        reader = wave.open(f, "rb")  # noqa: SIM115 - reads from f, which the caller closes
    except wave.Error as err:
        if not str(err).startswith("unknown format"):
            raise
        f.seek(0)
        return _open_riff(f, size, path)
    except RuntimeError as err:  # wave's chunk reader raises a bare RuntimeError on bad sizes
        raise _Malformed("chunk sizes point outside the file") from err
    width = reader.getsampwidth()
    if width > 4:
        raise _Malformed(f"{8 * width}-bit integer samples are not supported")
    layout = _make_layout(
        reader.getframerate(), reader.getnchannels(), width, False, reader.getnframes(), f, size
    )
    return layout, reader.readframes


def _make_layout(
    rate_hz: int,
    channels: int,
    width: int,
    is_float: bool,
    header_frames: int,
    f: BinaryIO,
    file_size: int,
) -> WavLayout:
    if not (_MIN_RATE_HZ <= rate_hz <= _MAX_RATE_HZ and 0 < channels <= _MAX_CHANNELS and width):
        raise _Malformed(f"bad header: rate {rate_hz} Hz, {channels} channels, width {width}")
    present = max(0, file_size - f.tell()) // (channels * width)
    return WavLayout(rate_hz, channels, width, is_float, min(header_frames, present))


def _open_riff(f: BinaryIO, size: int, path: Path) -> tuple[WavLayout, Callable[[int], bytes]]:
    """Walk RIFF chunks up to the data chunk; leaves ``f`` at the first sample."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise _Malformed("no RIFF/WAVE header")
    fmt: tuple[int, int, int, bool] | None = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise _Malformed("fmt chunk and/or data chunk missing")
        chunk_id, chunk_size = struct.unpack("<4sI", chunk)
        if chunk_id == b"fmt ":
            if not 16 <= chunk_size <= 1024:
                raise _Malformed(f"fmt chunk of {chunk_size} bytes")
            fmt = _parse_fmt(f.read(chunk_size + chunk_size % 2)[:chunk_size], path)
        elif chunk_id == b"data":
            if fmt is None:
                raise _Malformed("data chunk before fmt chunk")
            rate_hz, channels, width, is_float = fmt
            layout = _make_layout(
                rate_hz, channels, width, is_float, chunk_size // (channels * width), f, size
            )
            return layout, _frame_reader(f, layout.frame_bytes)
        else:
            f.seek(chunk_size + chunk_size % 2, 1)


def _frame_reader(f: BinaryIO, frame_bytes: int) -> Callable[[int], bytes]:
    def read_frames(num_frames: int) -> bytes:
        return f.read(num_frames * frame_bytes)

    return read_frames


def _parse_fmt(body: bytes, path: Path) -> tuple[int, int, int, bool]:
    if len(body) < 16:
        raise _Malformed("truncated fmt chunk")
    tag, channels, rate_hz, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _FORMAT_EXTENSIBLE:
        if len(body) < 26:
            raise _Malformed("truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
        (tag,) = struct.unpack_from("<H", body, 24)
    width = (bits + 7) // 8
    if tag == _FORMAT_PCM and 1 <= width <= 4:
        return rate_hz, channels, width, False
    if tag == _FORMAT_FLOAT and width in (4, 8):
        return rate_hz, channels, width, True
    raise AudioError(
        f"{path} uses an unsupported encoding (format tag 0x{tag:04x}, {bits} bits); "
        "voiced reads 8/16/24/32-bit integer PCM and 32/64-bit float WAV",
        fix=_CONVERT_FIX,
    )


def _decode(layout: WavLayout, read_frames: Callable[[int], bytes]) -> bytes:
    resampler = StreamResampler(layout.rate_hz, layout.channels)
    parts: list[bytes] = []
    remaining = layout.num_frames
    while remaining > 0:
        raw = read_frames(min(_BLOCK_FRAMES, remaining))
        usable = len(raw) - len(raw) % layout.frame_bytes
        if usable == 0:
            break
        remaining -= usable // layout.frame_bytes
        parts.append(resampler.process(decode_samples(raw[:usable], layout)))
    if parts:
        parts.append(resampler.flush())
    return b"".join(parts)


def decode_samples(raw: bytes, layout: WavLayout) -> np.ndarray:
    """Little-endian WAV sample bytes to float32 of shape (frames, channels) in [-1, 1]."""
    width = layout.sample_width_bytes
    if layout.is_float:
        data = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        data = ((value ^ 0x800000) - 0x800000).astype(np.float32) / 8388608.0
    else:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(
            np.float32
        )
    return data.reshape(-1, layout.channels)


class WavWriter:
    """Pipeline PCM to a 16 kHz mono int16 WAV, written incrementally.

    Buffers up to ``flush_samples`` and then writes them through ``wave``, which
    patches the header lengths on each write: the file on disk is a valid WAV up
    to the last flush even if the process is killed, and exact after close().
    """

    def __init__(self, path: Path, *, flush_samples: int = PIPELINE_RATE_HZ // 2) -> None:
        self.path = path
        try:
            self._file: BinaryIO = path.open("wb")
        except OSError as err:
            raise AudioError(
                f"cannot write {path}: {err.strerror or err}",
                fix="check that the folder exists and is writable",
            ) from err
        self._wave = wave.open(self._file, "wb")  # noqa: SIM115 - closed in close()
        self._wave.setnchannels(1)
        self._wave.setsampwidth(SAMPLE_WIDTH_BYTES)
        self._wave.setframerate(PIPELINE_RATE_HZ)
        self._pending = bytearray()
        self._flush_bytes = flush_samples * SAMPLE_WIDTH_BYTES
        self._closed = False
        self.samples_written = 0
        """Samples handed to write() so far (flushed or not)."""

    def write(self, pcm: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed WavWriter")
        self._pending += pcm
        self.samples_written += len(pcm) // SAMPLE_WIDTH_BYTES
        if len(self._pending) >= self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._closed or not self._pending:
            return
        try:
            self._wave.writeframes(bytes(self._pending))
            self._file.flush()
        except OSError as err:
            raise AudioError(
                f"cannot write {self.path}: {err.strerror or err}", fix="check free disk space"
            ) from err
        self._pending.clear()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            self._wave.close()
        finally:
            self._closed = True
            self._file.close()
