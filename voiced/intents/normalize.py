"""Forgiving text normalisation for matching ASR output against intents.

Whisper writes "Set a timer for 5 minutes." or "set a timer for five minutes";
both become "set a timer for 5 minutes". Case, punctuation and filler words go.
"""

from __future__ import annotations

import re

FILLERS = frozenset({"um", "uh", "erm", "er", "ah", "hmm", "please", "okay", "ok", "so", "well"})
UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def normalize(text: str) -> str:
    """Lower case, no punctuation or fillers, numbers as digits, single spaces."""
    words = _WORD.findall(text.lower().replace("-", " "))
    words = [w for w in words if w not in FILLERS]
    return " ".join(_numbers_to_digits(words))


def _numbers_to_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in TENS:
            value = TENS[word]
            if index + 1 < len(words) and words[index + 1] in UNITS and UNITS[words[index + 1]]:
                value += UNITS[words[index + 1]]
                index += 1
            out.append(str(value))
        elif word in UNITS:
            out.append(str(UNITS[word]))
        elif word == "hundred" and out and out[-1].isdigit():
            out[-1] = str(int(out[-1]) * 100)
        else:
            out.append(word)
        index += 1
    return out
