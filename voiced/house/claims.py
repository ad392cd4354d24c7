"""The messages devices exchange on the house topics, and their validation.

Anyone on the broker can publish them, so each one is hostile until checked:
capped in size, exact in shape, plausible in value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

MAX_MESSAGE_BYTES = 512
MAX_LEVEL_DB = 100.0
"""No microphone hears a wake word 100 dB over its own noise floor: above is forged."""
MAX_CLOCK_SKEW_S = 30.0
"""A claim or result stamped further from our clock than this is stale or forged."""
_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_WAKE_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_OUTCOME = re.compile(r"[a-z_]{1,40}")


@dataclass(frozen=True, slots=True)
class Claim:
    """ "I heard the wake word": one per detection, on ``voiced/house/claim``."""

    device_id: str
    wake_id: str
    """Unique to this detection: the winner's result names it."""
    phrase: str
    """The wake word's model name (hey_jarvis): only claims for the same word compete."""
    heard_at_s: float
    """Wall-clock time (Unix seconds) the wake word ended at this device."""
    level_db: float
    """How loud the wake word was over this device's own noise floor, in dB."""


@dataclass(frozen=True, slots=True)
class Result:
    """ "The wake I won is done": on ``voiced/house/result``, from the winner."""

    device_id: str
    wake_id: str
    outcome: str
    at_s: float


def encode(message: Claim | Result) -> str:
    return json.dumps(asdict(message), separators=(",", ":"))


def decode_claim(payload: bytes, now_s: float) -> Claim | str:
    """The claim, or why it was refused."""
    data = _object(payload, {"device_id", "wake_id", "phrase", "heard_at_s", "level_db"})
    if isinstance(data, str):
        return data
    names = _names(data, device_id=_NAME, wake_id=_WAKE_ID, phrase=_NAME)
    if isinstance(names, str):
        return names
    times = _numbers(data, "heard_at_s", "level_db")
    if isinstance(times, str):
        return times
    heard_at_s, level_db = times
    if abs(heard_at_s - now_s) > MAX_CLOCK_SKEW_S:
        return "heard_at_s is too far from this device's clock"
    if not 0.0 <= level_db <= MAX_LEVEL_DB:
        return f"level_db must be between 0 and {MAX_LEVEL_DB:g}"
    return Claim(names["device_id"], names["wake_id"], names["phrase"], heard_at_s, level_db)


def decode_result(payload: bytes, now_s: float) -> Result | str:
    data = _object(payload, {"device_id", "wake_id", "outcome", "at_s"})
    if isinstance(data, str):
        return data
    names = _names(data, device_id=_NAME, wake_id=_WAKE_ID, outcome=_OUTCOME)
    if isinstance(names, str):
        return names
    numbers = _numbers(data, "at_s")
    if isinstance(numbers, str):
        return numbers
    if abs(numbers[0] - now_s) > MAX_CLOCK_SKEW_S:
        return "at_s is too far from this device's clock"
    return Result(names["device_id"], names["wake_id"], names["outcome"], numbers[0])


def _object(payload: bytes, keys: set[str]) -> dict[str, object] | str:
    if len(payload) > MAX_MESSAGE_BYTES:
        return f"larger than {MAX_MESSAGE_BYTES} bytes"
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not UTF-8 JSON"
    if not isinstance(data, dict) or set(data) != keys:
        return "not an object with exactly " + ", ".join(sorted(keys))
    return data


def _names(data: dict[str, object], **patterns: re.Pattern[str]) -> dict[str, str] | str:
    names: dict[str, str] = {}
    for key, pattern in patterns.items():
        value = data[key]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return f"{key} is not a valid name"
        names[key] = value
    return names


def _numbers(data: dict[str, object], *keys: str) -> tuple[float, ...] | str:
    values: list[float] = []
    for key in keys:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{key} must be a number"
        try:  # JSON integers have no size limit: a 400-digit one overflows a float
            number = float(value)
        except OverflowError:
            return f"{key} is out of range"
        if not math.isfinite(number):
            return f"{key} must be finite"
        values.append(number)
    return tuple(values)
