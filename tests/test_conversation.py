"""Conversation memory: a token budget, oldest turns dropped first, reset after idle."""

from __future__ import annotations

from voiced.pipeline.conversation import Conversation


def words(text: str) -> int:
    return len(text.split())


def test_history_kept_within_the_token_budget() -> None:
    memory = Conversation(words, budget_tokens=12, idle_reset_s=300)
    memory.remember("one two three", "four five", now_s=0)
    memory.remember("six seven", "eight nine ten", now_s=1)
    messages = memory.messages_for("eleven twelve", now_s=2)
    # 2 words for the question leave 10: the newest turn (5) fits, the older (5) too.
    assert [m["content"] for m in messages] == [
        "one two three", "four five", "six seven", "eight nine ten", "eleven twelve"]  # fmt: skip
    tight = Conversation(words, budget_tokens=8, idle_reset_s=300)
    tight.turns = memory.turns[:]
    messages = tight.messages_for("eleven twelve", now_s=2)
    assert [m["content"] for m in messages] == ["six seven", "eight nine ten", "eleven twelve"]


def test_memory_resets_after_idle_time() -> None:
    memory = Conversation(words, budget_tokens=100, idle_reset_s=60)
    memory.remember("who are you", "a voice assistant", now_s=0)
    assert len(memory.messages_for("and then", now_s=30)) == 3
    assert memory.messages_for("hello", now_s=200) == [{"role": "user", "content": "hello"}]


def test_empty_replies_are_not_remembered() -> None:
    memory = Conversation(words, budget_tokens=100, idle_reset_s=60)
    memory.remember("stop", "  ", now_s=0)
    assert memory.turns == []
