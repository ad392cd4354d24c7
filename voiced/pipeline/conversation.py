"""Conversation memory for the language model: a token budget and an idle reset."""

from __future__ import annotations

from collections.abc import Callable

from voiced.engines.slm import Message


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
            ({"role": "user", "content": user_text}, {"role": "assistant", "content": reply})
        )
        self._last_activity_s = now_s
        del self.turns[:-32]  # never grow without bound, whatever the budget

    def reset(self) -> None:
        self.turns.clear()
