"""Conversation memory for the language model: a token budget and an idle reset.

Memory is there for follow-ups ("and what about Spain?"), not for a transcript.
Small models copy what they see: in a 60-question session with every earlier
reply in the context, SmolLM2 began every answer with the same old sentence, and
Qwen2.5-0.5B drifted into one-word answers copied from earlier ones (44/62
against 49/62 answered alone). So the earlier exchanges are shown only to a
question that reads as a follow-up (it starts with "and", "what about"... or
points back with "it", "there", "that"...); every other question is answered
as if asked first. At most the last three exchanges are kept, each reply cut to
its first sentence: every token shown is read again on every turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from voiced.engines.slm import Message

MAX_TURNS = 3
"""Exchanges kept at most, whatever the token budget."""
MAX_GIST_CHARS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


_FOLLOW_UP_OPENINGS = (
    "and ", "what about ", "how about ", "also ", "but ", "then ", "why ", "really",
    "is that ", "are you sure", "tell me more", "say that again", "repeat", "which one",
)  # fmt: skip
_BACK_REFERENCES = frozenset(
    [
        "it",
        "its",
        "it's",
        "that",
        "this",
        "those",
        "these",
        "there",
        "they",
        "them",
        "their",
        "he",
        "him",
        "his",
        "she",
        "her",
        "else",
        "more",
        "again",
        "another",
        "same",
    ]
)


def is_follow_up(user_text: str) -> bool:
    """True when ``user_text`` needs what was said before to be understood."""
    words = re.findall(r"[a-z']+", user_text.lower())
    text = " ".join(words) + " "
    return text.startswith(_FOLLOW_UP_OPENINGS) or any(w in _BACK_REFERENCES for w in words)


def gist(reply: str) -> str:
    """The first sentence of ``reply`` (at most MAX_GIST_CHARS): what memory keeps."""
    first = _SENTENCE_END.split(reply.strip(), maxsplit=1)[0]
    return first[:MAX_GIST_CHARS].strip()


class Conversation:
    """Earlier turns, oldest dropped first once they exceed ``budget_tokens``.

    Time is passed in (seconds on the stream clock) so tests never sleep.
    """

    def __init__(
        self, count_tokens: Callable[[str], int], *, budget_tokens: int, idle_reset_s: float
    ) -> None:
        self.count_tokens = count_tokens
        self.budget_tokens = budget_tokens
        self.idle_reset_s = idle_reset_s
        self.turns: list[tuple[Message, Message]] = []
        self._last_activity_s: float | None = None

    def messages_for(self, user_text: str, now_s: float) -> list[Message]:
        """History plus the new user message, within the budget."""
        if self._last_activity_s is not None and now_s - self._last_activity_s > self.idle_reset_s:
            self.turns.clear()
        self._last_activity_s = now_s
        user: Message = {"role": "user", "content": user_text}
        if not is_follow_up(user_text):
            return [user]
        budget = self.budget_tokens - self.count_tokens(user_text)
        kept: list[Message] = []
        for question, answer in reversed(self.turns):
            cost = self.count_tokens(question["content"]) + self.count_tokens(answer["content"])
            if cost > budget:
                break
            budget -= cost
            kept[:0] = [question, answer]
        return [*kept, user]

    def remember(self, user_text: str, reply: str, now_s: float) -> None:
        if not reply.strip():
            return
        self.turns.append(
            ({"role": "user", "content": user_text}, {"role": "assistant", "content": gist(reply)})
        )
        self._last_activity_s = now_s
        del self.turns[:-MAX_TURNS]

    def reset(self) -> None:
        self.turns.clear()
