"""Streaming SLM text into speakable chunks for TTS.

The first chunk goes out as early as it can sound natural: at the first clause
boundary (``, ; :`` or a dash) once it has ``first_chunk_min_words`` words, or
at the first sentence end. Later chunks end at sentence ends, or at a clause
boundary once the pending sentence has grown past ``long_sentence_words``.
Line breaks end chunks too (lists and headings).

A sentence end is ``. ! ? …`` (optionally followed by closing quotes or
brackets) and then whitespace; never a decimal point (``3.5``), an
abbreviation (``Dr.``, ``e.g.``), an initial (``J. Smith``) or a list number
(``1.`` at the start of a chunk). Punctuation at the very end of the buffer
waits for the next delta, because only the next character tells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voiced.errors import ConfigError

ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "no", "approx",
        "fig", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec", "inc", "ltd", "co", "corp", "dept",
        "est", "min", "max", "cf", "al",
    }
)  # fmt: skip
"""Words (lower case, without the final dot) whose dot does not end a sentence.

Dotted letters (``e.g``, ``i.e``, ``a.m``, ``U.S``) and single letters count too.
"""

_SENTENCE_END = re.compile(r"(?:\.\.\.|[.!?…])+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-–—]|—)(?=\s)")
_NEWLINE = re.compile(r"\n")
_WORD = re.compile(r"[\w'’]+")
_WORD_THEN_SPACE = re.compile(r"[\w'’]+(?=\s)")
_DOTTED_LETTERS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]|[^\W\d_]")


@dataclass(frozen=True, slots=True)
class ChunkerSettings:
    first_chunk_min_words: int = 3
    """Words needed before a clause boundary may end the first chunk."""
    long_sentence_words: int = 20
    """Words after which later chunks may end at a clause boundary too."""
    first_chunk_max_words: int = 0
    """Cut the first chunk after this many words even without punctuation, so speech
    starts while the model is still writing its first sentence (0: off)."""

    def __post_init__(self) -> None:
        if self.first_chunk_min_words < 1 or self.long_sentence_words < 1:
            raise ConfigError(
                "chunker first_chunk_min_words and long_sentence_words must be >= 1",
                fix="set them to positive word counts",
            )


class SpeechChunker:
    """``feed(delta)`` text deltas in order; each call returns the chunks now complete."""

    def __init__(self, settings: ChunkerSettings | None = None) -> None:
        self.settings = settings or ChunkerSettings()
        self._buffer = ""
        self._chunks_out = 0

    def reset(self) -> None:
        """Forget pending text (barge-in, new reply)."""
        self._buffer = ""
        self._chunks_out = 0

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of reply: everything pending, as chunks."""
        chunks = self._drain(final=True)
        rest = self._buffer.strip()
        self._buffer = ""
        if rest:
            chunks.append(rest)
            self._chunks_out += 1
        return chunks

    def _drain(self, *, final: bool) -> list[str]:
        chunks: list[str] = []
        text = self._buffer + (" " if final else "")
        while (cut := self._find_cut(text)) is not None:
            chunk = text[:cut].strip()
            text = text[cut:]
            if chunk:
                chunks.append(chunk)
                self._chunks_out += 1
        self._buffer = text[:-1] if final and text.endswith(" ") else text
        return chunks

    def _find_cut(self, text: str) -> int | None:
        """Index just after the first usable boundary in ``text``, or None."""
        clause_words = (
            self.settings.first_chunk_min_words
            if self._chunks_out == 0
            else self.settings.long_sentence_words
        )
        candidates = [m.end() for m in _NEWLINE.finditer(text) if text[: m.start()].strip()]
        candidates += [m.end() for m in _SENTENCE_END.finditer(text) if _ends_sentence(text, m)]
        candidates += [
            m.end()
            for m in _CLAUSE_END.finditer(text)
            if _count_words(text[: m.start()]) >= clause_words
        ]
        if self._chunks_out == 0 and self.settings.first_chunk_max_words:
            words = list(_WORD_THEN_SPACE.finditer(text))
            if len(words) >= self.settings.first_chunk_max_words:
                candidates.append(words[self.settings.first_chunk_max_words - 1].end())
        return min(candidates, default=None)


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    if text[match.start()] != ".":
        return True
    if text[match.start() : match.start() + 3] == "...":
        return True
    before = text[: match.start()]
    token = before.split()[-1] if before.split() else ""
    word = token.lstrip("\"'“‘([").lower()
    if word in ABBREVIATIONS or _DOTTED_LETTERS.fullmatch(word):
        return False
    is_list_number = word.isdigit() and len(before.split()) == 1
    return not is_list_number


def _count_words(text: str) -> int:
    return len(_WORD.findall(text))
