"""Which device answers a wake word several heard: the house's book of claims.

Pure logic with the time given, so it is tested without a broker. Each device
keeps the same book and reaches the same verdict: the loudest claim for the same
wake word wins, the lower device id on a tie. Everything that can go wrong fails
open (this device answers): no broker, no other device, a flood of claims. A
louder claim beats ours whenever it comes until our turn answers, so a device that
detects the word a few hundred ms after the others still wins if it is nearest. A
device we lost to that never says it took the wake is ignored for a while, so
neither a crashed device nor a client forging claims keeps the house deaf.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from voiced.house.claims import Claim, Result
from voiced.settings import HouseSettings

MATCH_S = 2.5
"""Claims for one wake word: heard within this of ours. Detection delays differ by
a few hundred ms, NTP keeps clocks on a LAN within a few, and a device running
behind real time stamps its claim late; two different wake words this close are
not possible (a turn lasts longer, and the refractory period is 2 s)."""
CLAIM_MEMORY_S = 5.0
"""Claims are kept this long, to meet a wake word we detect after the others."""
MIN_CLAIM_INTERVAL_S = 1.0
"""One device's claims closer together than this are a flood: the later ones are ignored."""
MAX_RIVALS = 8
"""More devices claiming one wake word than this is a flood: only those that have sent
results count; with none of them, ignore them all and answer."""
MAX_KEPT = 256
"""Claims and results kept at most (a flood must not grow memory)."""
MAX_DEVICES = 64
"""Devices remembered (last claim, distrust); the oldest are forgotten."""


@dataclass(frozen=True, slots=True)
class Verdict:
    won: bool
    winner: str
    reason: str
    """Won: alone, loudest, flood or offline. Lost: quieter, or answered (another
    device already answers this wake)."""
    rivals: int = 0
    winner_level_db: float = 0.0


@dataclass(slots=True)
class _Device:
    last_claim_s: float = -1e18
    distrusted_until_s: float = -1e18


@dataclass(slots=True)
class _Expected:
    """We lost a wake to ``winner``: its result should come before ``due_s``."""

    winner: str
    wake_id: str
    due_s: float


@dataclass(slots=True)
class HouseBook:
    device_id: str
    settings: HouseSettings
    now_s: Callable[[], float]
    """Wall-clock seconds: claims from other devices carry wall-clock times."""
    _claims: deque[tuple[float, Claim]] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    _devices: OrderedDict[str, _Device] = field(default_factory=OrderedDict)
    _expected: list[_Expected] = field(default_factory=list)
    _results: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    """(when, wake id, outcome) of recent results: a winner may report before we decide."""
    ignored: int = 0
    """Claims refused as flood, unknown or distrusted devices (for tests and status)."""
    _reported: OrderedDict[str, None] = field(default_factory=OrderedDict)
    """Devices that sent a result: they answer wakes they win."""
    _wary_until_s: float = -1e18
    """A winner never answered: until then only devices that reported count. A forger
    that makes up a new device id per claim is never distrusted by its id alone."""

    def claim(self, phrase: str, level_db: float) -> Claim:
        """Ours, for a wake word this device just heard."""
        wake_id = f"{self.device_id[:40]}-{uuid.uuid4().hex[:16]}"
        return Claim(self.device_id, wake_id, phrase, self.now_s(), level_db)

    def hear_claim(self, claim: Claim) -> bool:
        """Another device's claim; False when it is ignored."""
        now = self.now_s()
        self._forget(now)
        if claim.device_id == self.device_id:
            return False  # our own, echoed by the broker
        allowed = self.settings.devices
        device = self._device(claim.device_id)
        if (
            (allowed and claim.device_id not in allowed)
            or device.distrusted_until_s > now
            or now - device.last_claim_s < MIN_CLAIM_INTERVAL_S
        ):  # fmt: skip
            self.ignored += 1
            return False
        device.last_claim_s = now
        self._claims.append((now, claim))
        return True

    def hear_result(self, result: Result) -> None:
        """A device said it took a wake, or answers it: it is a device that answers,
        so trust it again."""
        self._expected = [e for e in self._expected if e.winner != result.device_id]
        self._results.append((self.now_s(), result.wake_id, result.outcome))
        self._forget(self.now_s())
        if result.device_id in self._devices:
            self._devices[result.device_id].distrusted_until_s = -1e18
        self._reported[result.device_id] = None
        self._reported.move_to_end(result.device_id)
        while len(self._reported) > MAX_DEVICES:
            self._reported.popitem(last=False)

    def beaten(self, ours: Claim) -> Verdict | None:
        """A louder claim for our wake word, if one has come: we lose at once. Checked
        until we answer, so a device that heard the word later than us still counts."""
        self._check_expected()
        rivals = self._rivals(ours)
        if not rivals or len(rivals) > MAX_RIVALS:
            return None  # alone, or a flood: fail open
        best = min([ours, *rivals.values()], key=lambda c: (-c.level_db, c.device_id))
        if best.device_id == self.device_id:
            return None
        return self._lose_to(best, "quieter", len(rivals))

    def final(self, ours: Claim, *, connected: bool, answering: str) -> Verdict:
        """When our turn is ready to answer (and our wait is over): do we?"""
        self._check_expected()
        if not connected:
            return Verdict(True, self.device_id, "offline")
        rivals = self._rivals(ours)
        if len(rivals) > MAX_RIVALS:
            return Verdict(True, self.device_id, "flood", len(rivals), ours.level_db)
        # One that heard it long after the others must not answer too: a device that
        # already answers this wake keeps it, however loud we are.
        answers = {wake_id for _, wake_id, outcome in self._results if outcome == answering}
        already = [claim for claim in rivals.values() if claim.wake_id in answers]
        if already:
            first = min(already, key=lambda c: c.heard_at_s)
            return self._lose_to(first, "answered", len(rivals))
        lost = self.beaten(ours)
        if lost is not None:
            return lost
        reason = "loudest" if rivals else "alone"
        return Verdict(True, self.device_id, reason, len(rivals), ours.level_db)

    def _rivals(self, ours: Claim) -> dict[str, Claim]:
        """The claims ours competes with. In a flood the devices that have sent results
        still count (else every device would answer); with none, the flood is all."""
        rivals = self._claims_like(ours)
        reported = {d: c for d, c in rivals.items() if d in self._reported}
        return reported if len(rivals) > MAX_RIVALS and 0 < len(reported) <= MAX_RIVALS else rivals

    def _claims_like(self, ours: Claim) -> dict[str, Claim]:
        now = self.now_s()
        return {
            claim.device_id: claim
            for _, claim in self._claims
            if claim.phrase == ours.phrase and abs(claim.heard_at_s - ours.heard_at_s) <= MATCH_S
            and self._device(claim.device_id).distrusted_until_s <= now
            and (self._wary_until_s <= now or claim.device_id in self._reported)
        }  # fmt: skip

    def _lose_to(self, winner: Claim, reason: str, rivals: int) -> Verdict:
        if winner.wake_id not in {wake_id for _, wake_id, _ in self._results}:
            due_s = self.now_s() + self.settings.result_timeout_s
            self._expected.append(_Expected(winner.device_id, winner.wake_id, due_s))
        return Verdict(False, winner.device_id, reason, rivals, winner.level_db)

    def _check_expected(self) -> None:
        now = self.now_s()
        overdue = [e for e in self._expected if e.due_s <= now]
        self._expected = [e for e in self._expected if e.due_s > now]
        for expected in overdue:
            self._device(expected.winner).distrusted_until_s = now + self.settings.distrust_s
            self._wary_until_s = now + self.settings.distrust_s

    def distrusted(self) -> list[str]:
        self._check_expected()
        now = self.now_s()
        return [name for name, d in self._devices.items() if d.distrusted_until_s > now]

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device()
            while len(self._devices) > MAX_DEVICES:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
        return device

    def _forget(self, now: float) -> None:
        while self._claims and now - self._claims[0][0] > CLAIM_MEMORY_S:
            self._claims.popleft()
        while self._results and now - self._results[0][0] > CLAIM_MEMORY_S:
            self._results.popleft()
