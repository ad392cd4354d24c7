"""SpeechChunker fed token-sized deltas, as an SLM streams them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiced.errors import ConfigError
from voiced.pipeline.chunker import ChunkerSettings, SpeechChunker


def tokens(text: str) -> list[str]:
    """Split like a BPE tokenizer roughly does: words with their leading space, punctuation."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", text)


def stream(text: str, chunker: SpeechChunker | None = None) -> list[list[str]]:
    """Chunks returned by each feed() call, then by flush()."""
    chunker = chunker or SpeechChunker()
    return [chunker.feed(tok) for tok in tokens(text)] + [chunker.flush()]


def chunks(text: str, chunker: SpeechChunker | None = None) -> list[str]:
    return [chunk for out in stream(text, chunker) for chunk in out]


def test_first_chunk_at_first_clause_with_three_words() -> None:
    assert chunks("Sure, the weather today is sunny, warm and calm. It will rain later.") == [
        "Sure, the weather today is sunny,",
        "warm and calm.",
        "It will rain later.",
    ]


def test_first_chunk_is_emitted_as_soon_as_the_boundary_is_known() -> None:
    outs = stream("I think so, but let me check.")
    first_nonempty = next(i for i, out in enumerate(outs) if out)
    # tokens: I, think, so, ",", " but" -> emitted when " but" shows the comma is followed by space
    assert first_nonempty == 4 and outs[4] == ["I think so,"]


def test_short_sentence_is_a_first_chunk() -> None:
    assert chunks("Yes. That works, I checked it twice.") == [
        "Yes.",
        "That works, I checked it twice.",
    ]


def test_later_chunks_wait_for_sentence_end() -> None:
    text = "Okay. First, mix the flour, the sugar and the eggs. Then bake it."
    assert chunks(text) == [
        "Okay.",
        "First, mix the flour, the sugar and the eggs.",
        "Then bake it.",
    ]


def test_long_sentence_splits_at_a_clause() -> None:
    long = " ".join(["word"] * 22)
    out = chunks(f"Hello there. {long}, and then some more words here.")
    assert out == ["Hello there.", f"{long},", "and then some more words here."]


def test_numbers_abbreviations_and_initials_do_not_split() -> None:
    text = (
        "It costs 3.5 dollars. Dr. Smith, e.g. the dentist, lives on Main St. near J. K. Rowling. "
        "The U.S. team won 1,000 to 3:30."
    )
    assert chunks(text) == [
        "It costs 3.5 dollars.",
        "Dr. Smith, e.g. the dentist, lives on Main St. near J. K. Rowling.",
        "The U.S. team won 1,000 to 3:30.",
    ]


def test_question_exclamation_ellipsis_and_quotes() -> None:
    assert chunks('Really?! He said "stop." Well... fine.') == [
        "Really?!",
        'He said "stop."',
        "Well...",
        "fine.",
    ]


def test_dashes_are_clause_boundaries() -> None:
    assert chunks("The answer is simple - just restart it. Done.") == [
        "The answer is simple -",
        "just restart it.",
        "Done.",
    ]


def test_lines_and_list_numbers() -> None:
    text = "Here is the plan:\n1. Preheat the oven\n2. Mix everything\nEnjoy!"
    assert chunks(text) == [
        "Here is the plan:",
        "1. Preheat the oven",
        "2. Mix everything",
        "Enjoy!",
    ]


def test_flush_emits_the_rest_and_reset_forgets() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("No punctuation at all") == []
    assert chunker.flush() == ["No punctuation at all"]
    assert chunker.flush() == []
    chunker.feed("Half a sent")
    chunker.reset()
    assert chunker.feed("ence. ") == ["ence."]


def test_sentence_end_at_buffer_end_waits_for_next_delta() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("It is 3.") == []
    assert chunker.feed("5 degrees.") == []
    assert chunker.feed(" Next") == ["It is 3.5 degrees."]


def test_whitespace_only_input_gives_no_chunks() -> None:
    assert chunks("   \n\n  ") == []


def test_settings_validation() -> None:
    with pytest.raises(ConfigError):
        ChunkerSettings(first_chunk_min_words=0)
    custom = SpeechChunker(ChunkerSettings(first_chunk_min_words=1))
    assert chunks("Well, okay then.", custom) == ["Well,", "okay then."]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab .,!?:;-\n3", max_size=80), st.integers(min_value=1, max_value=5))
def test_chunks_preserve_all_words_in_order(text: str, step: int) -> None:
    chunker = SpeechChunker()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.feed(text[i : i + step])
    out += chunker.flush()
    assert all(chunk and chunk == chunk.strip() for chunk in out)
    assert "".join("".join(out).split()) == "".join(text.split())


def test_first_chunk_can_start_after_a_few_words() -> None:
    chunker = SpeechChunker(ChunkerSettings(first_chunk_max_words=5))
    out: list[str] = []
    reply = "The sky is blue because sunlight scatters in the air. It is pretty."
    for word in reply.split():
        out += chunker.feed(word + " ")
    out += chunker.flush()
    assert out[0] == "The sky is blue because"
    assert out[1:] == ["sunlight scatters in the air.", "It is pretty."]
    # A short first sentence still ends at its full stop.
    short = SpeechChunker(ChunkerSettings(first_chunk_max_words=5))
    assert short.feed("It is Paris. ") == ["It is Paris."]
