"""Never let the language model say it did something: a guard on a reply's first words.

Told plainly what the device can do, Qwen2.5 0.5B still answered "Wake me up at
seven tomorrow morning." with "Sure, I'll wake you up at seven tomorrow
morning." Nothing set an alarm. The guard reads the first words of every model
reply; a reply that opens by claiming an action ("Sure, I'll wake...", "Done.",
"Turning on...") is stopped and replaced by a plain "I can't". Only a reply whose
first word could open such a claim ("Sure", "I'll", "Okay"...) is held back, and
only until its first few words decide it: "The capital of France is Paris." is
let through at its first word, so answers lose no time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

REPLACEMENT = "I can't do that: nothing is set up for it."
DECIDE_WORDS = 7
"""Words after which a reply that has not claimed anything is let through."""

_ACTIONS = (
    "turn|switch|set|wake|call|phone|order|book|send|text|message|email|add|lock|unlock|"
    "open|close|shut|warm|heat|cool|play|pause|start|stop|remind|schedule|dim|brighten|"
    "adjust|raise|lower|increase|decrease|activate|deactivate|enable|disable|arm|disarm|"
    "notify|alert|contact|arrange|buy|record|water|feed|put|get|bring|let"
)
_GERUNDS = (
    "turning|switching|setting|waking|calling|ordering|booking|sending|texting|adding|"
    "locking|unlocking|opening|closing|warming|heating|cooling|playing|starting|stopping|"
    "reminding|scheduling|dimming|adjusting|raising|lowering|activating|arming|notifying|"
    "contacting|arranging|buying|recording|watering|feeding|getting|letting"
)
_OPENERS = frozenset(
    ("sure", "okay", "ok", "alright", "certainly", "absolutely", "yes", "done", "of", "i",
     "i'll", "i've", "i'm", "right", "great", "no", "all", "consider", "it's")
)  # fmt: skip
"""First words that can open a claim; any other first word releases the reply at once."""
_SURE = r"(?:sure|okay|ok|alright|certainly|absolutely|yes|of course|right away|great|no problem)"
_AGREE = r"(?:sure|okay|ok|alright|certainly|of course|right away|no problem)"
"""Agreeing to a request (not "yes", which also opens answers: "Yes, adding salt helps.")."""
_WILL = r"(?:i'll|i will|i've|i have|i'm going to|i am going to|i've gone ahead and)"
_CLAIM = re.compile(
    rf"^(?:{_SURE}\b[,.!]*\s*)?{_WILL}\s+(?:now\s+|just\s+|go ahead and\s+)?(?:{_ACTIONS})\b"
    rf"|^(?:{_SURE}\b[,.!]*\s*)?(?:i'm|i am)\s+(?:now\s+)?(?:{_GERUNDS})\b"
    # Agreeing, then the action: "Sure, wake up at seven.", "Okay, turning them on",
    # "Sure, I can help you warm the house up" (not "I can set timers": no agreeing word).
    rf"|^{_AGREE}\b[,.!]*\s*(?:i can\s+)?(?:{_ACTIONS}|{_GERUNDS})\b"
    # A promise to act: "Yes, I can help you warm the house up" (1.5B, measured).
    rf"|^(?:{_SURE}\b[,.!]*\s*)?i can help you\s+(?:to\s+)?(?:{_ACTIONS})\b"
)
_DONE = re.compile(rf"^(?:{_SURE}[,.!]*\s*)?(?:done|all set|consider it done|it's done)\b")


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def claims_an_action(reply_start: str) -> bool:
    """True when ``reply_start`` opens by saying the assistant acted or will act."""
    text = _plain(reply_start)
    return bool(_CLAIM.match(text) or _DONE.match(text))


def verdict(reply_start: str, *, final: bool) -> bool | None:
    """True: a claim; False: let it through; None: not enough words yet."""
    words = _plain(reply_start).split()
    if not words:
        return False if final else None
    if words[0].strip(",.!?") not in _OPENERS:
        return False
    if claims_an_action(reply_start):
        return True
    decided = final or len(words) >= DECIDE_WORDS or re.search(r"[.!?]\s", reply_start)
    return False if decided else None


async def guard_claims(deltas: AsyncIterator[str]) -> AsyncIterator[str]:
    """``deltas`` as they come, unless the reply opens with a claim of having acted:
    then the model is stopped (the source is closed) and REPLACEMENT said instead."""
    try:
        held = ""
        async for delta in deltas:
            held += delta
            decision = verdict(held, final=False)
            if decision is None:
                continue
            if decision:
                await _close(deltas)
                yield REPLACEMENT
                return
            yield held
            break
        else:
            if held and verdict(held, final=True):
                yield REPLACEMENT
            elif held:
                yield held
            return
        async for delta in deltas:
            yield delta
    finally:
        # Closed early by its consumer (speech failed): the model stops too.
        await _close(deltas)


async def _close(deltas: AsyncIterator[str]) -> None:
    close = getattr(deltas, "aclose", None)
    if close is not None:
        await close()
