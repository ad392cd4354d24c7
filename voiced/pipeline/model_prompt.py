"""What the language model is told: what the device can do, and what day it is.

The system prompt is fixed for the life of the process, so CTranslate2 computes
its state once (``static_prompt``). The date and time change, so they go in a
second, short system message after it: CTranslate2 keeps the state of every
static prompt it has seen and never frees it (measured: 14 MB more per distinct
prompt with the 0.5B model), so a prompt that changed every minute would grow
the daemon by 20 GB a day. And the clock message is only sent with a question
that has to do with time (``mentions_time``): its 25 tokens are read again on
every turn, which put 64 ms on the 0.5B model's first token on 2 cores.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from voiced.engines.slm import Message
from voiced.intents.builtin import MONTHS, WEEKDAYS

BUILTIN_ABILITIES = (
    "set, cancel and check timers",
    "make the speaker louder or quieter",
    "tell the time and the date",
)
MAX_LISTED_COMMANDS = 12
"""User commands named in the prompt; more would cost prompt tokens on every turn."""


@runtime_checkable
class DescribesCommands(Protocol):
    """An intent handler that can name the commands it carries out, for the prompt."""

    def example_commands(self) -> Sequence[str]: ...


def capabilities_text(handlers: Sequence[object]) -> str:
    """One paragraph: what the device can do, and that it can do nothing else."""
    commands: list[str] = []
    for handler in handlers:
        if isinstance(handler, DescribesCommands):
            commands.extend(handler.example_commands())
    abilities = list(BUILTIN_ABILITIES)
    if commands:
        quoted = ", ".join(f'"{c}"' for c in commands[:MAX_LISTED_COMMANDS])
        abilities.append(f"carry out these commands: {quoted}")
    return (
        f"This device can only {'; '.join(abilities)}. It cannot control anything else "
        "in the home and cannot look anything up online. If asked to do something it "
        "cannot do, say so in one short sentence. Never say you did something you did not do."
    )


def system_prompt(base: str, handlers: Sequence[object]) -> str:
    """The fixed system prompt: the configured one, then the device's abilities."""
    return f"{base.strip()}\n{capabilities_text(handlers)}".strip()


_TIME_WORDS = re.compile(
    r"\b(?:today|tonight|tomorrow|yesterday|now|current(?:ly)?|time|times|date|day|days|"
    r"week|weeks|weekend|month|months|year|years|morning|afternoon|evening|hour|hours|"
    r"minute|minutes|season|ago|until|since|when|birthday|christmas|holiday|holidays|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december)\b"
)


def mentions_time(text: str) -> bool:
    """True when answering ``text`` may need today's date or the time of day."""
    return bool(_TIME_WORDS.search(text.lower()))


def clock_message(now_s: float | None = None) -> Message:
    """A system message with the local date and time (minute precision)."""
    now = time.localtime(now_s)
    hour12 = now.tm_hour % 12 or 12
    suffix = "AM" if now.tm_hour < 12 else "PM"
    return {
        "role": "system",
        "content": (
            f"It is {WEEKDAYS[now.tm_wday]}, {MONTHS[now.tm_mon - 1]} {now.tm_mday}, "
            f"{now.tm_year}, {hour12}:{now.tm_min:02d} {suffix}."
        ),
    }
