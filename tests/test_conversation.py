"""Conversation memory: shown to follow-ups only, within a token budget, oldest turns
dropped first, replies cut to their first sentence, reset after idle."""

from __future__ import annotations

import pytest

from voiced.pipeline.conversation import MAX_TURNS, Conversation, gist, is_follow_up


def words(text: str) -> int:
    return len(text.split())


def test_history_kept_within_the_token_budget() -> None:
    memory = Conversation(words, budget_tokens=12, idle_reset_s=300)
    memory.remember("one two three", "four five", now_s=0)
    memory.remember("six seven", "eight nine ten", now_s=1)
    messages = memory.messages_for("and twelve", now_s=2)
    # 2 words for the question leave 10: the newest turn (5) fits, the older (5) too.
    assert [m["content"] for m in messages] == [
        "one two three", "four five", "six seven", "eight nine ten", "and twelve"]  # fmt: skip
    tight = Conversation(words, budget_tokens=8, idle_reset_s=300)
    tight.turns = memory.turns[:]
    messages = tight.messages_for("and twelve", now_s=2)
    assert [m["content"] for m in messages] == ["six seven", "eight nine ten", "and twelve"]


def test_a_question_that_stands_alone_is_asked_alone() -> None:
    """The earlier replies are not shown, so a small model cannot copy them."""
    memory = Conversation(words, budget_tokens=100, idle_reset_s=300)
    memory.remember("what is the capital of italy", "Rome.", now_s=0)
    alone = memory.messages_for("What is the capital of Spain?", now_s=1)
    assert alone == [{"role": "user", "content": "What is the capital of Spain?"}]
    follow = memory.messages_for("And what about Germany?", now_s=2)
    assert [m["role"] for m in follow] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("And what about Spain?", True),
        ("What language do they speak there?", True),
        ("Tell me more.", True),
        ("How tall is it?", True),
        ("What is the capital of France?", False),
        ("What is one hundred divided by four?", False),
        ("Who wrote Hamlet?", False),
    ],
)
def test_follow_up_detection(text: str, expected: bool) -> None:
    assert is_follow_up(text) is expected


def test_replies_are_remembered_by_their_first_sentence_and_few() -> None:
    memory = Conversation(words, budget_tokens=1000, idle_reset_s=300)
    for n in range(MAX_TURNS + 2):
        memory.remember(f"question {n}", f"Answer {n}. Then a long tail of words.", now_s=n)
    assert len(memory.turns) == MAX_TURNS
    assert memory.turns[-1][1]["content"] == f"Answer {MAX_TURNS + 1}."
    assert gist("It is 3.5 metres. More.") == "It is 3.5 metres."
    assert len(gist("x" * 1000)) == 200


def test_memory_resets_after_idle_time() -> None:
    memory = Conversation(words, budget_tokens=100, idle_reset_s=60)
    memory.remember("who are you", "a voice assistant", now_s=0)
    assert len(memory.messages_for("and then", now_s=30)) == 3
    assert memory.messages_for("hello", now_s=200) == [{"role": "user", "content": "hello"}]


def test_empty_replies_are_not_remembered() -> None:
    memory = Conversation(words, budget_tokens=100, idle_reset_s=60)
    memory.remember("stop", "  ", now_s=0)
    assert memory.turns == []
