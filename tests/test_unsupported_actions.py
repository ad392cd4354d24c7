"""Device commands nothing is set up for: a true "I can't", never a claim, no model."""

from __future__ import annotations

import pytest

from voiced.bench.qa import BenchControls, is_honest_refusal
from voiced.intents.builtin import BuiltinIntents
from voiced.intents.normalize import normalize
from voiced.intents.unsupported import INTENT, UnsupportedActions


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("Turn on the kitchen lights.", "I can't turn on the kitchen lights"),
        ("Can you lock my front door?", "I can't lock your front door"),
        ("Please play some jazz.", "I can't play some jazz"),
        ("Set the thermostat to twenty degrees.", "I can't set the thermostat to 20 degrees"),
        ("Make the living room warmer.", "I can't make the living room warmer"),
        ("Send a message to my mom saying I'm late.", "I can't send a message to your mom"),
        ("Let the dog out.", "I can't let the dog out"),
        ("Is the front door locked?", "I can't check whether the front door is locked"),
        ("Are the kitchen lights on?", "I can't check whether the kitchen lights are on"),
        ("What is on my calendar tomorrow?", "I can't see your calendar"),
    ],
)
def test_commands_get_a_true_reply(text: str, reply: str) -> None:
    found = UnsupportedActions().match(normalize(text), BenchControls())
    assert found is not None and found.intent == INTENT
    assert found.reply == f"{reply}: nothing is set up for that."
    assert found.action is None and not found.slots
    assert is_honest_refusal(found.reply)


@pytest.mark.parametrize(
    "text",
    ["What is the capital of France?", "Set a timer for five minutes.", "Stop the timer.",
     "Turn up the volume.", "Why is the sky blue?", "Tell me a joke.", "Is it going to rain?",
     "Is the sun a star?"],
)  # fmt: skip
def test_questions_and_builtin_commands_are_left_alone(text: str) -> None:
    assert UnsupportedActions().match(normalize(text), BenchControls()) is None


def test_builtins_still_win_when_both_would_match() -> None:
    """The responder asks UnsupportedActions last; the built-ins take their commands."""
    controls = BenchControls()
    found = BuiltinIntents().match(normalize("Turn it down."), controls)
    assert found is not None and found.intent == "volume_down"


def test_hostile_and_huge_text_is_bounded() -> None:
    found = UnsupportedActions().match(normalize("open " + "door " * 10_000), BenchControls())
    assert found is not None and len(found.reply.split()) < 20
