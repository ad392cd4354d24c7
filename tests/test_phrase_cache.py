"""The phrase cache's bookkeeping: remembered phrases age out, pinned groups do not."""

from __future__ import annotations

import time

from voiced.engines.phrase_cache import PHRASE_MAX_CHARS, PhraseCache
from voiced.intents.builtin import clock_replies, day_reply, time_reply


def test_remembered_phrases_drop_the_least_recently_used() -> None:
    cache = PhraseCache(max_remembered=2)
    cache.remember("one", [b"1"])
    cache.remember("two", [b"2"])
    assert cache.get("one") == [b"1"]  # "two" is now the oldest
    cache.remember("three", [b"3"])
    assert cache.get("two") is None
    assert cache.get("one") == [b"1"] and cache.get("three") == [b"3"]


def test_pinned_groups_survive_any_number_of_remembered_phrases() -> None:
    cache = PhraseCache(max_remembered=2)
    cache.pin("fixed", {"Louder.": [b"L"]})
    for index in range(10):
        cache.remember(f"phrase {index}", [b"x"])
    assert cache.get("Louder.") == [b"L"]


def test_pinning_a_group_replaces_only_that_group() -> None:
    cache = PhraseCache()
    cache.pin("fixed", {"Louder.": [b"L"]})
    cache.pin("clock", {"It is 9:15 PM.": [b"a"], "It is 9:16 PM.": [b"b"]})
    cache.pin("clock", {"It is 9:16 PM.": [b"b"], "It is 9:17 PM.": [b"c"]})
    assert cache.get("It is 9:15 PM.") is None
    assert cache.pinned("clock") == {"It is 9:16 PM.", "It is 9:17 PM."}
    assert cache.get("Louder.") == [b"L"]


def test_only_short_nonempty_text_is_accepted() -> None:
    assert PhraseCache.accepts("Quieter.")
    assert PhraseCache.accepts("x" * PHRASE_MAX_CHARS)
    assert not PhraseCache.accepts("x" * (PHRASE_MAX_CHARS + 1))
    assert not PhraseCache.accepts("")


def test_spoken_time_and_date() -> None:
    assert time_reply(0, 5) == "It is 12:05 AM."
    assert time_reply(12, 0) == "It is 12 o'clock PM."
    assert time_reply(21, 16) == "It is 9:16 PM."
    assert day_reply(4, 27, 11) == "Today is Friday, November 27."


def test_clock_replies_cover_this_minute_the_next_and_today() -> None:
    # 23:59:30 local: the next minute is past midnight, the date is still today's.
    late = time.mktime((2026, 11, 27, 23, 59, 30, 0, 0, -1))
    this_minute, next_minute, today = clock_replies(late)
    assert (this_minute, next_minute) == ("It is 11:59 PM.", "It is 12 o'clock AM.")
    assert today == "Today is Friday, November 27."
    assert all(PhraseCache.accepts(reply) for reply in clock_replies(late))
