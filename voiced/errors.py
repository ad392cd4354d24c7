"""Errors that reach a user: each carries a stable code, a message and a fix.

The command line prints ``error[<code>]: <message>`` and ``fix: <fix>`` and exits
with ``exit_code``; no traceback reaches a user for a VoicedError.
"""

from __future__ import annotations


class VoicedError(Exception):
    """Base class for every error voiced reports to a user."""

    code = "voiced"
    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error[{self.code}]: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class UsageError(VoicedError):
    """A command-line argument is wrong."""

    code = "usage"
    exit_code = 2


class ConfigError(VoicedError):
    """The configuration file is malformed or holds a wrong value."""

    code = "config"
    exit_code = 2


class ModelError(VoicedError):
    """A model is missing, corrupted or cannot be prepared."""

    code = "model"
    exit_code = 3


class AudioError(VoicedError):
    """An audio device or file cannot be opened or read."""

    code = "audio"
    exit_code = 4


class EngineError(VoicedError):
    """An engine (ASR, TTS, SLM, wake word) failed at run time."""

    code = "engine"
    exit_code = 5


class SpeakerLostError(AudioError):
    """The speaker stopped taking audio: what was queued did not play out in time."""

    code = "speaker_lost"


class BusyError(VoicedError):
    """A request that needs the assistant to itself came while a turn was in flight."""

    code = "busy"
