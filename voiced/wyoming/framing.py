"""Wyoming frames, read with every length capped before anything is read.

A frame is one JSON header line ``{"type", "version", "data"?, "data_length"?,
"payload_length"?}``, then ``data_length`` bytes of JSON data (merged over an inline
``data``), then ``payload_length`` bytes of payload (PCM). The ``wyoming`` package
gives the message types and writes frames; its reader trusts the lengths a peer
sends (a 4 GB ``payload_length`` is a 4 GB buffer), so this one checks them first.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from wyoming.event import Event

MAX_HEADER_BYTES = 8 * 1024
"""The header line, newline included (the StreamReader's limit is set to it)."""
MAX_DATA_BYTES = 64 * 1024
"""JSON data: the longest real one is an ``info`` or a synthesize text."""
MAX_PAYLOAD_BYTES = 256 * 1024
"""One payload: Home Assistant sends 2 KiB audio chunks; 256 KiB is 8 s of 16 kHz."""
MAX_TYPE_CHARS = 64
_TYPE = re.compile(r"[a-z][a-z0-9_-]*")


class FrameError(Exception):
    """The peer sent something that is not a Wyoming frame: the connection closes."""


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event; None at a clean end of stream. Raises FrameError."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as err:
        raise FrameError(f"a header line longer than {MAX_HEADER_BYTES} bytes") from err
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise FrameError("the stream ended inside a header")
    header = _json_object(line, "header")
    kind = header.get("type")
    if not isinstance(kind, str) or len(kind) > MAX_TYPE_CHARS or not _TYPE.fullmatch(kind):
        raise FrameError(f"a header without a valid type: {str(kind)[:MAX_TYPE_CHARS]!r}")
    data = header.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError(f"{kind}: inline data is not an object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES, kind)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES, kind)
    if data_length:
        data = {**data, **_json_object(await _exactly(reader, data_length, kind), "data")}
    payload = await _exactly(reader, payload_length, kind) if payload_length else None
    return Event(type=kind, data=data, payload=payload)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError: a ValueError
        raise FrameError(f"the {what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise FrameError(f"the {what} is not a JSON object")
    return value


def _length(header: dict[str, Any], key: str, cap: int, kind: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cap:
        raise FrameError(f"{kind}: {key} must be 0 to {cap}, not {str(value)[:40]}")
    return value


async def _exactly(reader: asyncio.StreamReader, count: int, kind: str) -> bytes:
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as err:
        raise FrameError(
            f"{kind}: the stream ended {count - len(err.partial)} bytes short"
        ) from err
