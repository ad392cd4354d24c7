"""Built-in intents: timers, the time and day, stop, louder and quieter."""

from __future__ import annotations

import re
import time

from voiced.intents.base import AssistantControls, IntentMatch

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
VOLUME_STEP = 0.2
MAX_TIMER_S = 24 * 3600

LOUDER, QUIETER = "Louder.", "Quieter."
TIMER_CANCELLED, NO_TIMER = "Timer cancelled.", "There is no timer running."
TIMER_RANGE = "Timers can run from one second to one day."
FIXED_REPLIES = (LOUDER, QUIETER, TIMER_CANCELLED, NO_TIMER)
"""Replies that never change, synthesised once at start so they play at once."""

_TIMER = re.compile(r"\b(?:set|start|make|timer for)\b.*\btimer\b|\btimer for\b")
_DURATION = re.compile(r"\b(?P<n>\d+|a|an)\s+(?P<unit>second|minute|hour)s?\b")
_CANCEL_TIMER = re.compile(r"\b(?:cancel|stop|delete|clear|remove)\b.*\btimers?\b")
_TIME = re.compile(r"\bwhat(?:s| is)? (?:the )?time\b|\bwhat time is it\b")
_DAY = re.compile(r"\bwhat(?:s| is)? (?:the )?(?:day|date)\b|\bwhat day is it\b")
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


class BuiltinIntents:
    """Matches the built-in commands; never touches the language model."""

    def match(self, normalized: str, controls: AssistantControls) -> IntentMatch | None:
        for method in (self._stop, self._cancel_timer, self._timer, self._time, self._day,
                       self._volume):  # fmt: skip
            found = method(normalized, controls)
            if found is not None:
                return found
        return None

    def _timer(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        found = _DURATION.search(text) if _TIMER.search(text) else None
        if not found:
            return None
        raw, unit = found.group("n"), found.group("unit")
        amount = 1 if raw in ("a", "an") else int(raw)
        duration_s = amount * UNIT_SECONDS[unit]
        if not 0 < duration_s <= MAX_TIMER_S:
            return IntentMatch("timer_set", TIMER_RANGE)
        spoken = _spoken_duration(amount, unit)
        controls.set_timer(duration_s, spoken)
        return IntentMatch("timer_set", f"Timer set for {spoken}.", {"duration_s": str(duration_s)})

    def _cancel_timer(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        if not _CANCEL_TIMER.search(text):
            return None
        count = controls.cancel_timers()
        reply = TIMER_CANCELLED if count else NO_TIMER
        return IntentMatch("timer_cancel", reply, {"cancelled": str(count)})

    def _time(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        if not _TIME.search(text):
            return None
        hour, minute, *_ = controls.local_time()
        return IntentMatch("time", time_reply(hour, minute))

    def _day(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        if not _DAY.search(text):
            return None
        _, _, weekday, day, month = controls.local_time()
        return IntentMatch("day", day_reply(weekday, day, month))

    def _stop(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        if not _STOP.match(text):
            return None
        return IntentMatch("stop", "", stop_speaking=True)

    def _volume(self, text: str, controls: AssistantControls) -> IntentMatch | None:
        if _LOUDER.search(text):
            level = controls.change_volume(+VOLUME_STEP)
            return IntentMatch("volume_up", LOUDER, {"volume": f"{level:.1f}"})
        if _QUIETER.search(text):
            level = controls.change_volume(-VOLUME_STEP)
            return IntentMatch("volume_down", QUIETER, {"volume": f"{level:.1f}"})
        return None
