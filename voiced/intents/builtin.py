"""Built-in intents: timers, the time and day, stop, louder and quieter."""

from __future__ import annotations

import math
import re
import time

from voiced.intents.base import IntentMatch, WorldView
from voiced.intents.effects import CancelTimers, ChangeVolume, SetTimer, StopSpeaking

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
VOLUME_STEP = 0.2
MAX_TIMER_S = 24 * 3600
MIN_VOLUME = 0.1

LOUDER, QUIETER = "Louder.", "Quieter."
TIMER_CANCELLED, NO_TIMER = "Timer cancelled.", "There is no timer running."
TIMER_RANGE = "Timers can run from one second to one day."
FIXED_REPLIES = (LOUDER, QUIETER, TIMER_CANCELLED, NO_TIMER)
"""Replies that never change, synthesised once at start so they play at once."""

_TIMER = re.compile(r"\b(?:set|start|make|timer for)\b.*\btimer\b|\btimer for\b")
_DURATION = re.compile(r"\b(?P<n>\d+|a|an)\s+(?P<unit>second|minute|hour)s?\b")
_CANCEL_TIMER = re.compile(r"\b(?:cancel|stop|delete|clear|remove)\b.*\btimers?\b")
_NAMED = re.compile(r"\b(?:a|an|the|my)\s+(?P<name>[a-z]+(?: [a-z]+)?)\s+timer\b")
_CANCEL_NAMED = re.compile(r"\b(?:the|my|that)\s+(?P<name>[a-z]+(?: [a-z]+)?)\s+timer\b")
_TIME_LEFT = re.compile(
    r"\bhow (?:much|long)\b.*\b(?:left|remaining|to go)\b|\btime (?:is )?left\b"
)
_LEFT_NAMED = re.compile(r"\b(?:the|my)\s+(?P<name>[a-z]+(?: [a-z]+)?)\s+timer\b")
_NOT_NAMES = frozenset({"new", "all", "every", "this", "that", "other", "first", "last", "a", "an",
                        "the", "my", "of", "on", "second", "minute", "hour"})  # fmt: skip
_TIME = re.compile(r"\bwhat(?:s|'s| is)? (?:the )?time\b|\bwhat time is it\b")
_DAY = re.compile(r"\bwhat(?:s|'s| is)? (?:the )?(?:day|date)\b|\bwhat day is it\b")
_OTHER_DAY = re.compile(
    r"\b(?:tomorrow|yesterday|next|last|ago|from now|until|christmas|birthday)\b"
)
"""A day question about another day ("what day is it tomorrow?") is the model's, which
is given the date; the intent would answer with today's."""
_STOP = re.compile(r"^(?:stop|cancel|never ?mind|be quiet|shut up|quiet|that's all|nothing)$")
_LOUDER = re.compile(r"\b(?:louder|volume up|turn (?:it |the volume )?up|speak up)\b")
_QUIETER = re.compile(r"\b(?:quieter|softer|volume down|turn (?:it |the volume )?down)\b")


def time_reply(hour: int, minute: int) -> str:
    suffix = "AM" if hour < 12 else "PM"
    hour12 = hour % 12 or 12
    spoken = f"{hour12} o'clock" if minute == 0 else f"{hour12}:{minute:02d}"
    return f"It is {spoken} {suffix}."


def day_reply(weekday: int, day: int, month: int) -> str:
    return f"Today is {WEEKDAYS[weekday]}, {MONTHS[month - 1]} {day}."


def clock_replies(now_s: float) -> tuple[str, ...]:
    """The time replies for this minute and the next, and today's date reply:
    what the time and day intents would say around ``now_s`` (local time)."""
    this_minute, next_minute = time.localtime(now_s), time.localtime(now_s + 60)
    return (
        time_reply(this_minute.tm_hour, this_minute.tm_min),
        time_reply(next_minute.tm_hour, next_minute.tm_min),
        day_reply(this_minute.tm_wday, this_minute.tm_mday, this_minute.tm_mon),
    )


def _spoken_duration(amount: int, unit: str) -> str:
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def spoken_remaining(seconds: float) -> str:
    """ "9 minutes and 30 seconds", "1 hour and 5 minutes", "45 seconds"."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts = [_spoken_duration(hours, "hour")]
        if minutes:
            parts.append(_spoken_duration(minutes, "minute"))
    elif minutes:
        parts = [_spoken_duration(minutes, "minute")]
        if secs and minutes < 10:
            parts.append(_spoken_duration(secs, "second"))
    else:
        parts = [_spoken_duration(secs, "second")]
    return " and ".join(parts)


def _timer_name(found: re.Match[str] | None) -> str:
    name = (found.group("name") or "").strip() if found else ""
    words = name.split()
    if not words or any(w.isdigit() or w.rstrip("s") in UNIT_SECONDS or w in _NOT_NAMES
                        for w in words):  # fmt: skip
        return ""
    return name


class BuiltinIntents:
    """Matches the built-in commands; pure: it reads the view and changes nothing."""

    def match(self, normalized: str, view: WorldView) -> IntentMatch | None:
        for method in (self._stop, self._timer_left, self._cancel_timer, self._timer,
                       self._time, self._day, self._volume):  # fmt: skip
            found = method(normalized, view)
            if found is not None:
                return found
        return None

    def _timer(self, text: str, view: WorldView) -> IntentMatch | None:
        found = _DURATION.search(text) if _TIMER.search(text) else None
        if not found:
            return None
        raw, unit = found.group("n"), found.group("unit")
        amount = 1 if raw in ("a", "an") else int(raw)
        duration_s = amount * UNIT_SECONDS[unit]
        if not 0 < duration_s <= MAX_TIMER_S:
            return IntentMatch("timer_set", TIMER_RANGE)
        spoken = _spoken_duration(amount, unit)
        name = _timer_name(_NAMED.search(text))
        effect = SetTimer(duration_s, name or spoken, name)
        reply = (
            f"{name.capitalize()} timer set for {spoken}." if name else f"Timer set for {spoken}."
        )
        slots = {"duration_s": str(duration_s)} | ({"name": name} if name else {})
        return IntentMatch("timer_set", reply, slots, effects=(effect,))

    def _cancel_timer(self, text: str, view: WorldView) -> IntentMatch | None:
        if not _CANCEL_TIMER.search(text):
            return None
        name = _timer_name(_CANCEL_NAMED.search(text))
        timers = [t for t in view.timers() if not name or t.name == name]
        if not timers:
            reply = f"There is no {name} timer." if name else NO_TIMER
        else:
            reply = (
                f"{name.capitalize()} timer cancelled."
                if name
                else (TIMER_CANCELLED if len(timers) == 1 else f"{len(timers)} timers cancelled.")
            )
        effects = (CancelTimers(name or None),) if timers else ()
        slots = {"cancelled": str(len(timers))} | ({"name": name} if name else {})
        return IntentMatch("timer_cancel", reply, slots, effects=effects)

    def _timer_left(self, text: str, view: WorldView) -> IntentMatch | None:
        if not _TIME_LEFT.search(text):
            return None
        name = _timer_name(_LEFT_NAMED.search(text))
        timers = [t for t in view.timers() if not name or t.name == name]
        if not timers:
            return IntentMatch(
                "timer_remaining", f"There is no {name} timer." if name else NO_TIMER
            )
        if len(timers) == 1:
            reply = f"{spoken_remaining(timers[0].remaining_s)} left."
        else:
            parts = [f"{spoken_remaining(t.remaining_s)} on the {t.label} timer"
                     for t in timers[:3]]  # fmt: skip
            reply = "There are " + " and ".join(parts) + " left."
        return IntentMatch("timer_remaining", reply, {"timers": str(len(timers))})

    def _time(self, text: str, view: WorldView) -> IntentMatch | None:
        if not _TIME.search(text):
            return None
        hour, minute, *_ = view.local_time()
        return IntentMatch("time", time_reply(hour, minute))

    def _day(self, text: str, view: WorldView) -> IntentMatch | None:
        if not _DAY.search(text) or _OTHER_DAY.search(text):
            return None
        _, _, weekday, day, month = view.local_time()
        return IntentMatch("day", day_reply(weekday, day, month))

    def _stop(self, text: str, view: WorldView) -> IntentMatch | None:
        if not _STOP.match(text):
            return None
        return IntentMatch("stop", "", stop_speaking=True, effects=(StopSpeaking(),))

    def _volume(self, text: str, view: WorldView) -> IntentMatch | None:
        if _LOUDER.search(text):
            intent, reply, step = "volume_up", LOUDER, +VOLUME_STEP
        elif _QUIETER.search(text):
            intent, reply, step = "volume_down", QUIETER, -VOLUME_STEP
        else:
            return None
        level = clamp_volume(view.volume + step)
        return IntentMatch(intent, reply, {"volume": f"{level:.1f}"}, effects=(ChangeVolume(step),))


def clamp_volume(level: float) -> float:
    """The volume intents can set: 0.1 (never silent by voice) to 1.0."""
    return round(max(MIN_VOLUME, min(1.0, level)), 3)
