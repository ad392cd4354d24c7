"""The effects a built-in intent asks for: plain data, applied once after commit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetTimer:
    duration_s: float
    label: str
    """Spoken in the alert: "Your {label} timer is done."."""
    name: str = ""


@dataclass(frozen=True, slots=True)
class CancelTimers:
    name: str | None = None
    """Only the timer of this name; None cancels every timer."""


@dataclass(frozen=True, slots=True)
class ChangeVolume:
    step: float


@dataclass(frozen=True, slots=True)
class StopSpeaking:
    """Stop what is playing, ringing timers included."""


Effect = SetTimer | CancelTimers | ChangeVolume | StopSpeaking
