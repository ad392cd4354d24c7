"""Turning SLM text (often markdown) into text a TTS voice reads well.

Markdown markup, emojis and other pictographs go; links become their text and
bare URLs become "a link"; a few symbols become words (``%``, ``&``, ``°C``).
Numbers stay as digits: Piper's espeak front end reads them. Lines become
sentences, whitespace is collapsed.
"""

from __future__ import annotations

import re
import unicodedata

_DROP_CATEGORIES = frozenset({"So", "Sk", "Cs", "Co", "Cn", "Cf", "Me"})
"""Pictographs, modifier symbols (skin tones), surrogates, private use, unassigned,
format characters (zero-width joiner, emoji tags) and enclosing marks (keycaps)."""
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")

_CODE_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?://|www\.)[^>\s]+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*[^)\s]*(?:\s+\"[^\"]*\")?\s*\)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*(?:>\s?)+", re.MULTILINE)
_BULLET = re.compile(r"^\s*[-*+•‣◦▪]\s+", re.MULTILINE)
_RULE = re.compile(r"^\s*(?:[-*_=]\s*){3,}$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*(?::?-{3,}:?)?\s*$", re.MULTILINE)
_INNER_UNDERSCORES = re.compile(r"(?<=[^\W_])_+(?=[^\W_])")
_SYMBOL_WORDS = (
    (re.compile(r"\s*°\s*C\b"), " degrees Celsius"),
    (re.compile(r"\s*°\s*F\b"), " degrees Fahrenheit"),
    (re.compile(r"\s*°"), " degrees"),
    (re.compile(r"\s*%"), " percent"),
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"~(?=\s?\d)"), "about "),
    (re.compile(r"#(?=\d)"), "number "),
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_REPEATED_COMMAS = re.compile(r",(?:\s*,)+")
_LEADING_PUNCT = re.compile(r"^[\s,;:.]+")
_SENTENCE_FINAL = ".!?:;,…"


def clean_for_speech(text: str) -> str:
    """Speakable text from SLM output. Empty only when nothing in it is speakable."""
    cleaned = unicodedata.normalize("NFC", text)
    cleaned = _strip_markup(cleaned)
    cleaned = _words_for_symbols(cleaned)
    cleaned = _VARIATION_SELECTORS.sub("", cleaned)
    cleaned = "".join(ch for ch in cleaned if unicodedata.category(ch) not in _DROP_CATEGORIES)
    cleaned = _join_lines(cleaned)
    if not cleaned and re.search(r"[^\W_]", text):
        return " ".join(re.findall(r"[^\W_]+", text))
    return cleaned


def _strip_markup(text: str) -> str:
    text = _CODE_FENCE.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = "\n".join(_table_row(line) for line in text.split("\n"))
    text = text.replace("`", "").replace("*", "").replace("~~", "")
    text = _INNER_UNDERSCORES.sub(" ", text)
    return text.replace("_", "")


def _table_row(line: str) -> str:
    stripped = line.strip()
    if stripped.count("|") < 2:
        return line
    cells = [cell.strip() for cell in stripped.strip("|").split("|")]
    return ", ".join(cell for cell in cells if cell)


def _words_for_symbols(text: str) -> str:
    for pattern, words in _SYMBOL_WORDS:
        text = pattern.sub(words, text)
    return text


def _join_lines(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("\n")]
    lines = [_LEADING_PUNCT.sub("", line) for line in lines]
    lines = [line for line in lines if any(ch.isalnum() for ch in line)]
    for i, line in enumerate(lines[:-1]):
        if line[-1] not in _SENTENCE_FINAL:
            lines[i] = line + "."
    joined = " ".join(lines)
    joined = _SPACE_BEFORE_PUNCT.sub(r"\1", joined)
    return _REPEATED_COMMAS.sub(",", joined).strip()
