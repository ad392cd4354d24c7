"""The house's arbitration as the assistant and the MQTT bridge see it.

On a wake word the assistant opens a contest: our claim goes out on the house
topic at once, and the verdict falls ``window_ms`` of audio later (checked per
frame on the stream clock), while the turn goes on recording. A winner says so
at once (a ``taken`` result) and again when its turn is over. Nothing here
blocks: claims come in from the bridge's reader, go out through its queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from voiced.house.claims import Claim, Result, decode_claim, decode_result, encode
from voiced.house.contest import HouseBook, Verdict
from voiced.pipeline.turn import TurnRecord
from voiced.ratelimit import RateLimitedLog
from voiced.settings import HouseSettings

_LOGGER = logging.getLogger(__name__)
HOUSE_PREFIX = "voiced/house"
TAKEN = "taken"


@dataclass(frozen=True, slots=True)
class HouseTopics:
    claim: str = f"{HOUSE_PREFIX}/claim"
    result: str = f"{HOUSE_PREFIX}/result"
    say: str = f"{HOUSE_PREFIX}/say"

    @staticmethod
    def room_say(area: str) -> str:
        return f"voiced/room/{area}/say"


Send = Callable[[str, str, int], None]
"""topic, payload, QoS: offered to the MQTT bridge's queue, never waits."""


@dataclass(slots=True)
class Contest:
    claim: Claim
    turn_id: int
    decide_at_ms: float
    """On the stream clock: the wait follows the audio."""
    verdict: Verdict | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)


class HouseArbiter:
    def __init__(
        self, device_id: str, settings: HouseSettings, send: Send,
        connected: Callable[[], bool], *, phrase: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.device_id = device_id
        self.settings = settings
        self.book = HouseBook(device_id, settings, wall_clock)
        self.topics = HouseTopics()
        self.phrase = phrase
        self._send = send
        self._connected = connected
        self._wall_clock = wall_clock
        self._open: list[Contest] = []
        self._won: dict[int, Contest] = {}
        """turn id -> the contest it won, until the turn's result is sent."""
        self._log = RateLimitedLog(_LOGGER)

    # -- the assistant's side -------------------------------------------------

    def open(self, turn_id: int, level_db: float, now_ms: float) -> Contest:
        claim = self.book.claim(self.phrase, level_db)
        contest = Contest(claim, turn_id, now_ms + self.settings.window_ms)
        if self._connected():
            self._send(self.topics.claim, encode(claim), 0)
            self._open.append(contest)
        else:
            self._decide(contest)  # fail open at once: nobody to agree with
        return contest

    def tick(self, now_ms: float) -> list[Contest]:
        """Contests whose wait is over, decided now."""
        due = [c for c in self._open if c.decide_at_ms <= now_ms]
        if not due:
            return []
        self._open = [c for c in self._open if c.decide_at_ms > now_ms]
        for contest in due:
            self._decide(contest)
        return due

    def turn_done(self, turn: TurnRecord) -> None:
        contest = self._won.pop(turn.turn_id, None)
        if contest is not None:
            self._result(contest, turn.outcome or "done")

    def _decide(self, contest: Contest) -> None:
        verdict = self.book.verdict(contest.claim, connected=self._connected())
        contest.verdict = verdict
        contest.decided.set()
        if verdict.won:
            self._won[contest.turn_id] = contest
            self._result(contest, TAKEN)
        _LOGGER.info("wake %s: %s (%s, %d other device(s), %.1f dB)", contest.claim.wake_id,
                     "answering" if verdict.won else f"{verdict.winner} answers",
                     verdict.reason, verdict.rivals, contest.claim.level_db)  # fmt: skip

    def _result(self, contest: Contest, outcome: str) -> None:
        if self._connected():
            result = Result(self.device_id, contest.claim.wake_id, outcome[:40], self._wall_clock())
            self._send(self.topics.result, encode(result), 1)

    # -- the bridge's side ----------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [self.topics.claim, self.topics.result]

    def on_message(self, topic: str, payload: bytes) -> bool:
        """A message on a house topic; False when it is not one."""
        now = self._wall_clock()
        if topic == self.topics.claim:
            claim = decode_claim(payload, now)
            if isinstance(claim, str):
                self._log.warning("house-claim", "house claim ignored: %s", claim)
            else:
                self.book.hear_claim(claim)
            return True
        if topic == self.topics.result:
            result = decode_result(payload, now)
            if isinstance(result, str):
                self._log.warning("house-result", "house result ignored: %s", result)
            elif result.device_id != self.device_id:
                self.book.hear_result(result)
            return True
        return False
