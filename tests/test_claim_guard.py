"""The model never says it acted: replies that open with a claim are replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voiced.bench.qa import is_honest_refusal
from voiced.pipeline.claim_guard import REPLACEMENT, guard_claims, verdict


@pytest.mark.parametrize(
    "reply",
    [
        "Sure, I'll wake you up at seven tomorrow morning.",  # Qwen2.5 0.5B, measured
        "Sure, wake up at seven tomorrow morning.",
        "Sure, I can help you warm the house up a bit.",  # measured too
        "Yes, I can help you warm the house up a bit.",  # the 1.5B, measured
        "Okay, I've set an alarm for 7 AM.",
        "Of course, I'll call you a taxi.",
        "I'm turning on the heating.",
        "Done.",
        "All set!",
        "Okay, turning them on.",
    ],
)
def test_claims_are_caught(reply: str) -> None:
    assert verdict(reply, final=True) is True


@pytest.mark.parametrize(
    "reply",
    [
        "The capital of France is Paris.",
        "I can't do that.",
        "I'm sorry, I cannot call a taxi.",
        "I can set, cancel and check timers.",  # what it can do is not a claim
        "Sure, here is a joke: why did the computer go to the doctor?",
        "Yes, adding salt helps the water boil a little later.",
        "Let me think about that.",
        "I will tell you a story about a cat.",
        "Yes, I can help you find a good recipe.",
        "",
    ],
)
def test_answers_pass(reply: str) -> None:
    assert verdict(reply, final=True) is False


def test_an_answer_is_released_at_its_first_word() -> None:
    assert verdict("The", final=False) is False
    assert verdict("Sure", final=False) is None  # could still become a claim
    assert verdict("Sure, here is one", final=False) is None
    assert verdict("Sure, here is one you might like a lot", final=False) is False


async def _deltas(parts: list[str], log: list[str]) -> AsyncIterator[str]:
    try:
        for part in parts:
            log.append(part)
            yield part
    finally:
        log.append("closed")


def _run(parts: list[str]) -> tuple[list[str], list[str]]:
    log: list[str] = []

    async def collect() -> list[str]:
        return [d async for d in guard_claims(_deltas(parts, log))]

    return asyncio.run(collect()), log


def test_a_claim_stops_the_model_and_is_replaced() -> None:
    out, log = _run(["Sure", ",", " I'll", " wake", " you", " up", " at", " seven", "."])
    assert out == [REPLACEMENT]
    assert is_honest_refusal(REPLACEMENT)
    assert log[-1] == "closed" and " seven" not in log, "generation stopped at the claim"


def test_an_answer_streams_unchanged() -> None:
    parts = ["The", " capital", " of", " France", " is", " Paris", "."]
    out, _ = _run(parts)
    assert out[0] == "The", "released at the first word, no waiting"
    assert "".join(out) == "The capital of France is Paris."


def test_a_short_claim_at_the_end_of_the_stream_is_replaced() -> None:
    assert _run(["Done", "."])[0] == [REPLACEMENT]
    assert _run([])[0] == []
