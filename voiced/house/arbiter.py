"""The house's arbitration as the assistant and the MQTT bridge see it.

On a wake word the assistant opens a contest: our claim goes out on the house
topic at once and the turn goes on recording. Checked per frame on the stream
clock: a louder claim ends the turn at once; after ``window_ms`` a device still in
the running says so (``taken``); when its turn is ready to answer it decides
(``answering``), and says how the turn ended when it is over. The user is still
speaking through all of it, so a winner seldom waits. Nothing here blocks: claims
come in from the bridge's reader and go out through its queue.
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
"""Result: this device heard the wake word and is in the running (sent after its wait)."""
ANSWERING = "answering"
"""Result: this device answers the wake word (sent when its turn is ready)."""


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
    """On the stream clock: the least wait before this device may answer."""
    verdict: Verdict | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    wanted_at_ms: float | None = None
    """When the turn was ready to answer (stream clock): decide once the wait is over.
    The time from here to the verdict is all the latency the house adds."""
    announced: bool = False
    """``taken`` was sent: the others know this device is alive and in the running."""


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
        else:  # nobody to agree with: answer
            offline = self.book.final(claim, connected=False, answering=ANSWERING)
            self._decide(contest, offline, now_ms)
        return contest

    def tick(self, now_ms: float) -> list[Contest]:
        """Per frame: contests lost to a louder claim, and those whose turn is ready
        once the wait is over, decided now."""
        decided: list[Contest] = []
        for contest in self._open:
            verdict = self.book.beaten(contest.claim)
            waited = now_ms >= contest.decide_at_ms
            if verdict is None and waited and not contest.announced:
                contest.announced = True
                self._result(contest, TAKEN)
            if verdict is None and waited and contest.wanted_at_ms is not None:
                verdict = self.book.final(
                    contest.claim, connected=self._connected(), answering=ANSWERING)  # fmt: skip
            if verdict is not None:
                self._decide(contest, verdict, now_ms)
                decided.append(contest)
        if decided:
            self._open = [c for c in self._open if c.verdict is None]
        return decided

    def turn_done(self, turn: TurnRecord) -> None:
        """Its result goes to the others; a contest its turn never needed is closed."""
        contest = self._won.pop(turn.turn_id, None)
        for waiting in [c for c in self._open if c.turn_id == turn.turn_id]:
            self._open.remove(waiting)
            contest = contest or (waiting if waiting.announced else None)
        if contest is not None:
            self._result(contest, turn.outcome or "done")

    def _decide(self, contest: Contest, verdict: Verdict, now_ms: float) -> None:
        contest.verdict = verdict
        contest.decided.set()
        if verdict.won:
            self._won[contest.turn_id] = contest
            self._result(contest, ANSWERING)
        ready = contest.wanted_at_ms
        waited = f", waited {now_ms - ready:.0f} ms" if ready is not None else ""
        _LOGGER.info("wake %s: %s (%s, %d other device(s), %.1f dB%s)", contest.claim.wake_id,
                     "answering" if verdict.won else f"{verdict.winner} answers",
                     verdict.reason, verdict.rivals, contest.claim.level_db, waited)  # fmt: skip

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
