"""Interrupting by voice: when the user's speech over a reply is sure enough to stop it.

A cough, a door or a word of the residual echo must not cut a reply; a sentence
must, quickly. Each frame the VAD calls speech (and the echo canceller's gate
calls louder than its residual) adds its 10 ms to a leaky count, every other
frame takes ``LEAK`` of that back; the reply stops when the count reaches
``min_speech_ms``. The frames heard meanwhile are kept, so the new turn starts
with the words spoken before the reply stopped.
"""

from __future__ import annotations

from collections import deque

from voiced.audio.format import AudioFrame
from voiced.pipeline.hearing import PREROLL_MS

LEAK = 0.2
"""A non-speech frame takes back this share of a speech frame's 10 ms."""


class SpeechOverReply:
    """Debounces speech heard during a reply, and keeps what was heard."""

    def __init__(self, min_speech_ms: int) -> None:
        self.min_speech_ms = min_speech_ms
        self._count_ms = 0.0
        self.frames: deque[tuple[AudioFrame, bool]] = deque(
            maxlen=(PREROLL_MS + max(min_speech_ms, 10) * 3) // 10
        )
        """The latest frames with whether each was speech: the new turn's start."""

    def reset(self) -> None:
        self._count_ms = 0.0
        self.frames.clear()

    def hear(self, frame: AudioFrame, speech: bool) -> bool:
        """Take one frame; True when the user has spoken long enough to stop the reply."""
        self.frames.append((frame, speech))
        if speech:
            self._count_ms += frame.duration_ms
        else:
            self._count_ms = max(0.0, self._count_ms - LEAK * frame.duration_ms)
        return self._count_ms >= self.min_speech_ms
