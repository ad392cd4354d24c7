"""The assistant's public states, and the one table that says which trigger moves where.

The session itself is one state object at a time (voiced.pipeline.session), each
holding what that state needs; its public name is one of these. Every move the
session makes is one of this table's entries (tests/test_turn_engine.py checks
the moves of a busy session against it), which is what prevents the "stuck
after mute" and "stuck after the first wake" failures users report in other
assistants. One move is outside it: unmuting while an announcement plays goes
to that announcement's state, not to idle.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"


class Trigger(StrEnum):
    WAKE = "wake"
    """Wake word heard, a listen request, or speech in no-wake mode."""
    SPEECH_END = "speech_end"
    NO_SPEECH = "no_speech"
    FIRST_AUDIO = "first_audio"
    REPLY_DONE = "reply_done"
    FOLLOW_UP = "follow_up"
    """Reply done and the follow-up window is open."""
    BARGE_IN = "barge_in"
    CANCEL = "cancel"
    """Stop: the turn ends, nothing more is said."""
    SAY = "say"
    """Speak text that needs no listening (API say, a timer alert)."""
    MUTE = "mute"
    UNMUTE = "unmute"


S, T = State, Trigger
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.IDLE, T.WAKE): S.LISTENING,
    (S.IDLE, T.SAY): S.THINKING,
    (S.IDLE, T.MUTE): S.MUTED,
    (S.LISTENING, T.SPEECH_END): S.THINKING,
    (S.LISTENING, T.NO_SPEECH): S.IDLE,
    (S.LISTENING, T.CANCEL): S.IDLE,
    (S.LISTENING, T.MUTE): S.MUTED,
    (S.LISTENING, T.SAY): S.THINKING,
    (S.LISTENING, T.WAKE): S.LISTENING,
    (S.THINKING, T.FIRST_AUDIO): S.SPEAKING,
    (S.THINKING, T.REPLY_DONE): S.IDLE,
    (S.THINKING, T.FOLLOW_UP): S.LISTENING,
    (S.THINKING, T.BARGE_IN): S.LISTENING,
    (S.THINKING, T.CANCEL): S.IDLE,
    (S.THINKING, T.MUTE): S.MUTED,
    (S.SPEAKING, T.REPLY_DONE): S.IDLE,
    (S.SPEAKING, T.FOLLOW_UP): S.LISTENING,
    (S.SPEAKING, T.BARGE_IN): S.LISTENING,
    (S.SPEAKING, T.CANCEL): S.IDLE,
    (S.SPEAKING, T.MUTE): S.MUTED,
    (S.MUTED, T.UNMUTE): S.IDLE,
    (S.MUTED, T.MUTE): S.MUTED,
}
"""(state, trigger) -> next state. Pairs not listed leave the state unchanged."""


class StateMachine:
    def __init__(self) -> None:
        self.state = State.IDLE

    def fire(self, trigger: Trigger) -> bool:
        """Apply ``trigger``; True when the state changed."""
        new = TRANSITIONS.get((self.state, trigger))
        if new is None or new is self.state:
            return False
        self.state = new
        return True
