"""The time and date replies, synthesised before anyone asks.

"What time is it?" is among the most asked questions, and its reply changes
once a minute: synthesising it when asked costs about 140 ms of Piper on a
2-core x86 CPU, most of a command's latency once the words are heard. While
the assistant is idle, each new minute has the replies for this minute and the
next (and today's date) pinned in the TTS phrase cache, so the reply plays at
once even when the question straddles a minute boundary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from voiced.engines.base import TextToSpeech
from voiced.errors import VoicedError
from voiced.intents.builtin import FIXED_REPLIES, clock_replies
from voiced.pipeline.speech_text import clean_for_speech
from voiced.ratelimit import RateLimitedLog

CLOCK_GROUP = "clock"
FIXED_GROUP = "fixed"
SECONDS_PER_MINUTE = 60


class ClockPhrases:
    def __init__(
        self, tts: TextToSpeech, executor: concurrent.futures.Executor, errors_log: RateLimitedLog
    ) -> None:
        self._tts = tts
        self._executor = executor
        self._errors_log = errors_log
        self._prepared_minute: int | None = None

    def due(self, now_s: float) -> bool:
        """A new minute has begun since the replies were last prepared."""
        return int(now_s // SECONDS_PER_MINUTE) != self._prepared_minute

    async def prepare(self, now_s: float) -> None:
        """Synthesise (in the TTS worker) and pin the replies around ``now_s``."""
        self._prepared_minute = int(now_s // SECONDS_PER_MINUTE)
        # Cached under the text the speaker will ask for.
        replies = [clean_for_speech(reply) for reply in clock_replies(now_s)]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._executor, self._tts.prepare_phrases, CLOCK_GROUP, replies
            )
        except VoicedError as err:
            self._errors_log.log(
                logging.WARNING, err.code, "could not prepare the clock replies: %s", err.message
            )


async def prepare_fixed_replies(
    tts: TextToSpeech, executor: concurrent.futures.Executor, errors_log: RateLimitedLog
) -> None:
    """The built-in intents' replies that never change, synthesised once at start."""
    loop = asyncio.get_running_loop()
    replies = [clean_for_speech(reply) for reply in FIXED_REPLIES]
    try:
        await loop.run_in_executor(executor, tts.prepare_phrases, FIXED_GROUP, replies)
    except VoicedError as err:
        errors_log.log(logging.WARNING, err.code, "could not prepare the fixed replies: %s",
                       err.message)  # fmt: skip
