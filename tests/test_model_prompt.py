"""What the language model is told: the device's abilities, the configured commands,
the date and time (outside the cached prompt), and nothing for requests it cannot do."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from voiced.bench.qa import BenchControls
from voiced.engines.slm import Message
from voiced.intents.builtin import BuiltinIntents
from voiced.intents.user import load_user_intents
from voiced.pipeline.claim_guard import REPLACEMENT
from voiced.pipeline.model_prompt import (
    capabilities_text,
    clock_message,
    mentions_time,
    system_prompt,
)
from voiced.pipeline.responder import Responder
from voiced.settings import SlmSettings

LIGHTS = {
    "name": "light_on",
    "sentences": ["turn on the {area} lights"],
    "reply": "Turning on the {area} lights.",
    "mqtt": {"topic": "home/{area}/light/set", "payload": "ON"},
}


class RecordingSlm:
    """Stands in for the model to see what it is given (logic only; the real model is
    exercised in test_bench_qa.py and test_engines_real.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Message]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_reply(self, system_prompt: str, history: list[Message], **_: Any) -> Iterator[str]:
        self.calls.append((system_prompt, history))
        yield "Fine."

    def reply(self, system_prompt: str, history: list[Message], **kwargs: Any) -> str:
        return "".join(self.stream_reply(system_prompt, history, **kwargs))


def _ask(responder: Responder, text: str) -> str:
    async def run() -> str:
        return "".join([d async for d in responder.respond(text, 1.0).deltas])

    return asyncio.run(run())


def test_the_prompt_says_what_the_device_can_and_cannot_do() -> None:
    intents = load_user_intents([LIGHTS])
    text = capabilities_text([*intents, BuiltinIntents()])
    assert "timers" in text and "louder or quieter" in text and "time and the date" in text
    assert '"turn on the [area] lights"' in text
    assert "cannot control anything else" in text and "Never say you did" in text
    assert system_prompt("Be brief.", []).startswith("Be brief.\nThis device can only")


def test_the_clock_message_names_the_date_and_time() -> None:
    noon = time.mktime((2026, 12, 1, 12, 5, 0, 0, 0, -1))
    assert clock_message(noon) == {
        "role": "system", "content": "It is Tuesday, December 1, 2026, 12:05 PM."
    }  # fmt: skip


def test_the_responder_keeps_the_fixed_prompt_and_adds_the_clock() -> None:
    slm = RecordingSlm()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        responder = Responder([BuiltinIntents()], slm, SlmSettings(), BenchControls(), executor)  # type: ignore[arg-type]
        _ask(responder, "How many days until Christmas?")
        _ask(responder, "What is the capital of Spain?")
    prompts = {prompt for prompt, _ in slm.calls}
    assert len(prompts) == 1, "one static prompt for the life of the process (warm-up included)"
    warm_up, first, second = slm.calls
    assert first[1][0]["role"] == "system" and first[1][0]["content"].startswith("It is ")
    assert first[1][-1] == {"role": "user", "content": "How many days until Christmas?"}
    # no clock for a question that has nothing to do with time, and a question that
    # stands alone is not shown the earlier exchange
    assert second[1] == [{"role": "user", "content": "What is the capital of Spain?"}]


@pytest.mark.parametrize(
    ("text", "needs_clock"),
    [
        ("What year is it?", True),
        ("How many days until Christmas?", True),
        ("Is it Friday today?", True),
        ("Why is the sky blue?", False),
        ("Who wrote Hamlet?", False),
        ("Maybe later.", False),  # "may" is a month only as a whole word
    ],
)
def test_only_questions_about_time_get_the_clock(text: str, needs_clock: bool) -> None:
    assert mentions_time(text) is needs_clock


def test_requests_nothing_is_set_up_for_never_reach_the_model() -> None:
    slm = RecordingSlm()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        responder = Responder([BuiltinIntents()], slm, SlmSettings(), BenchControls(), executor)  # type: ignore[arg-type]
        executor.submit(threading.Event().set).result()  # the warm-up has run
        calls_before = len(slm.calls)
        reply = _ask(responder, "Turn on the kitchen lights.")
    assert reply == "I can't turn on the kitchen lights: nothing is set up for that."
    assert len(slm.calls) == calls_before


def test_a_configured_intent_still_wins() -> None:
    slm = RecordingSlm()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        handlers = [*load_user_intents([LIGHTS]), BuiltinIntents()]
        responder = Responder(handlers, slm, SlmSettings(), BenchControls(), executor)  # type: ignore[arg-type]
        found = responder.match_intent("Turn on the kitchen lights.")
    assert found is not None and found.intent == "light_on"


def test_a_reload_that_changes_the_intents_tells_the_model() -> None:
    slm = RecordingSlm()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        responder = Responder([BuiltinIntents()], slm, SlmSettings(), BenchControls(), executor)  # type: ignore[arg-type]
        before = responder.system_prompt
        responder.refresh_prompt()  # nothing changed: no new prompt, no new warm-up
        responder.handlers[:0] = load_user_intents([LIGHTS])
        responder.refresh_prompt()
    assert "turn on the [area] lights" not in before
    assert '"turn on the [area] lights"' in responder.system_prompt
    assert [prompt for prompt, _ in slm.calls] == [before, responder.system_prompt]


class ClaimingSlm(RecordingSlm):
    def stream_reply(self, system_prompt: str, history: list[Message], **_: Any) -> Iterator[str]:
        self.calls.append((system_prompt, history))
        yield from ["Sure", ",", " I'll", " wake", " you", " up", " at", " seven", "."]


def test_a_model_that_claims_an_action_is_not_believed_or_remembered() -> None:
    slm = ClaimingSlm()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        responder = Responder([BuiltinIntents()], slm, SlmSettings(), BenchControls(), executor)  # type: ignore[arg-type]
        reply = _ask(responder, "Wake me up at seven.")
        assert responder.conversation is not None
        remembered = [answer["content"] for _, answer in responder.conversation.turns]
    assert reply == REPLACEMENT
    assert all("wake you" not in text for text in remembered)
