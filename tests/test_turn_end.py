"""Early commit and Whisper loop guards: pure text logic."""

from __future__ import annotations

import pytest

from voiced.engines.asr import _cut_repeat
from voiced.pipeline.turn_end import looks_like_full_sentence


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("What is the capital of France?", True),
        ("Turn on the kitchen lights.", True),
        ("What is the capital of.", False),
        ("What is the capital of", False),
        ("Tell me about the.", False),
        ("Hello.", False),
        ("I was thinking...", False),
        ("Why is the sky blue?", True),
        ("Set a timer.", False),
        ("", False),
    ],
)
def test_full_sentence_heuristic(text: str, complete: bool) -> None:
    assert looks_like_full_sentence(text) is complete


@pytest.mark.parametrize(
    ("decoded", "kept"),
    [
        ("What is the capital of France? What is the capital of France",
         "What is the capital of France?"),
        ("Turn off the living room light. Turn off the living", "Turn off the living room light."),
        ("What time is it?", "What time is it?"),
        ("the the the the the", None),
        ("Open the garage door.", "Open the garage door."),
        ("Switch on the living room light. Switch on", "Switch on the living room light."),
        ("Stop. Stop", "Stop."),
        ("Yes. No.", "Yes. No."),
    ],
)  # fmt: skip
def test_decoding_loops_are_cut(decoded: str, kept: str | None) -> None:
    assert _cut_repeat(decoded) == kept
