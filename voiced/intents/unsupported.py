"""Commands for things nothing is set up to do, answered truthfully without the model.

"Turn on the kitchen lights" with no intent configured for it would otherwise go
to the language model, which is apt to answer "Sure, turning them on" and act
as if it had. Matched after every real intent, these get a short true reply
("I can't turn on the kitchen lights: nothing is set up for that.") and do
nothing; the reply is decided here, from the words alone, in microseconds.
"""

from __future__ import annotations

import re

from voiced.intents.base import AssistantControls, IntentMatch

INTENT = "unsupported_action"

_POLITE = r"(?:(?:can|could|would|will) you |i want you to |i'd like you to |go )?"
_ACTION = re.compile(
    "^" + _POLITE + r"(?P<verb>"
    r"turn (?:on|off|up|down)|switch (?:on|off)|open|close|shut|lock|unlock|dim|brighten|"
    r"play|pause|resume|skip|call|phone|text|message|email|send|order|buy|book|start|run|"
    r"add|remind|schedule|record|heat|cool|feed|arm|disarm|vacuum|water|"
    r"set the (?:temperature|thermostat|heating|lights?|alarm)|"
    r"make the (?:\w+ ){1,3}(?:warmer|cooler|colder|hotter|brighter|darker)"
    r")\b(?P<rest>.*)$"
)
_OBJECT_END = re.compile(r"\b(?:saying|that says|to say|telling|with the words|about)\b.*$")
_LET = re.compile("^" + _POLITE + r"let (?P<what>(?:the |my )?\w+(?: \w+)?) (?P<way>out|in)$")
_STATE = re.compile(
    r"^(?P<be>is|are) (?P<what>(?:the|my|our) (?:\w+ ){0,3}?\w+) "
    r"(?P<state>locked|unlocked|on|off|open|closed|shut|running|armed|charging|home)$"
)
_PERSONAL = re.compile(
    r"^(?:what's|what is|what are|read|read me|check) (?:on )?(?:my|our) "
    r"(?P<what>calendar|agenda|schedule|appointments|shopping list|to do list|emails?|"
    r"messages|texts|notifications)\b"
)
_MINE_TO_YOURS = {"my": "your", "me": "you", "i": "you", "mine": "yours", "our": "your"}
_KEEP_FOR_REAL_INTENTS = re.compile(r"\btimers?\b|\bvolume\b|\bmusic louder\b")
"""Words that belong to the built-in intents: never answered here."""
MAX_OBJECT_WORDS = 8


def _spoken_object(rest: str) -> str:
    rest = _OBJECT_END.sub("", rest)  # "send a message to my mom saying ..." ends at "mom"
    words = [_MINE_TO_YOURS.get(word, word) for word in rest.split()][:MAX_OBJECT_WORDS]
    return " ".join(words)


def _question_reply(text: str) -> str | None:
    """Questions about the home or the user's own data, which nothing here can see."""
    if found := _LET.match(text):
        what = _spoken_object(found.group("what"))
        return f"I can't let {what} {found.group('way')}: nothing is set up for that."
    if found := _STATE.match(text):
        what, state = _spoken_object(found.group("what")), found.group("state")
        return (
            f"I can't check whether {what} {found.group('be')} {state}: nothing is set up for that."
        )
    if found := _PERSONAL.match(text):
        return f"I can't see your {found.group('what')}: nothing is set up for that."
    return None


class UnsupportedActions:
    """An IntentHandler that recognises device commands no other handler took."""

    def match(self, normalized: str, controls: AssistantControls) -> IntentMatch | None:
        reply = _question_reply(normalized)
        if reply is not None:
            return IntentMatch(INTENT, reply)
        found = _ACTION.match(normalized)
        if found is None or _KEEP_FOR_REAL_INTENTS.search(normalized):
            return None
        verb, rest = found.group("verb"), _spoken_object(found.group("rest"))
        if verb.startswith("set the "):
            verb, rest = "set", f"{verb.removeprefix('set ')} {rest}".strip()
        what = f"{verb} {rest}".strip()
        return IntentMatch(INTENT, f"I can't {what}: nothing is set up for that.")
