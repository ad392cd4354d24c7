"""clean_for_speech: markdown, links, emojis and symbols out; words and digits in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiced.pipeline.speech_text import clean_for_speech


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Bold** and *italic* and __under__ and ~~gone~~", "Bold and italic and under and gone"),
        ("## Weather\nIt is sunny.", "Weather. It is sunny."),
        ("- eggs\n- milk\n* flour", "eggs. milk. flour"),
        ("1. Preheat\n2. Bake", "1. Preheat. 2. Bake"),
        ("> quoted text", "quoted text"),
        ("Use `pip install` now", "Use pip install now"),
        ("```python\nprint(1)\n```", "print(1)"),
        ("See [the docs](https://example.com/docs) today", "See the docs today"),
        ("Go to https://example.com/a?b=c.", "Go to a link."),
        ("Visit www.example.org or <https://x.y/z>", "Visit a link or a link"),
        ("I love it 😀👍🏽!", "I love it!"),
        ("Family 👨‍👩‍👧 and flag 🇫🇷 and 1️⃣", "Family and flag and 1"),
        ("It is 21°C, or 70 °F.", "It is 21 degrees Celsius, or 70 degrees Fahrenheit."),
        ("Rain chance 40%", "Rain chance 40 percent"),
        ("Salt & pepper, R&D", "Salt and pepper, R and D"),
        ("It costs 3.50 dollars at 7:30", "It costs 3.50 dollars at 7:30"),
        ("snake_case_name", "snake case name"),
        ("| city | temp |\n|---|---|\n| Oslo | 3 |", "city, temp. Oslo, 3"),
        ("Line one\n\n\nLine   two", "Line one. Line two"),
        ("Hello <br> world", "Hello world"),
        ("---\nText", "Text"),
        ("Café naïve São Paulo", "Café naïve São Paulo"),
        ("Привет, мир", "Привет, мир"),
    ],
)
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw) == spoken


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "😀🎉", "***", "---"])
def test_nothing_speakable_gives_empty(raw: str) -> None:
    assert clean_for_speech(raw) == ""


def test_url_only_is_still_said() -> None:
    assert clean_for_speech("https://example.com") == "a link"


@given(st.text(max_size=60))
def test_never_empty_when_input_has_words(text: str) -> None:
    out = clean_for_speech(text)
    if any(ch.isalnum() for ch in text):
        assert out.strip()
    assert out == out.strip() and "  " not in out
    assert "*" not in out and "`" not in out
