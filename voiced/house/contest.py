"""Which device answers a wake word several heard: the house's book of claims.

Pure logic with the time given, so it is tested without a broker. Each device
keeps the same book and reaches the same verdict: the loudest claim for the same
wake word wins, the lower device id on a tie. Everything that can go wrong fails
open (this device answers): no broker, no other device, a flood of claims. A
device that won and never reported a result is ignored for a while, so neither a
crashed device nor a client forging claims keeps the house deaf.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from voiced.house.claims import Claim, Result
from voiced.settings import HouseSettings

MATCH_S = 1.0
"""Claims for one wake word: heard within this of ours (detection delays differ
by a few hundred ms; NTP keeps clocks on a LAN within a few)."""
CLAIM_MEMORY_S = 3.0
"""Claims are kept this long, to meet a wake word we detect after the others."""
MIN_CLAIM_INTERVAL_S = 1.0
"""One device's claims closer together than this are a flood: the later ones are ignored."""
MAX_RIVALS = 8
"""More devices claiming one wake word than this is a flood: ignore them all, answer."""
MAX_KEPT = 256
"""Claims and results kept at most (a flood must not grow memory)."""
MAX_DEVICES = 64
"""Devices remembered (last claim, distrust); the oldest are forgotten."""


@dataclass(frozen=True, slots=True)
class Verdict:
    won: bool
    winner: str
    reason: str
    """alone, loudest, lost, flood or offline."""
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
    _results: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    """(when, wake id) of recent results: a winner may report before we decide."""
    ignored: int = 0
    """Claims refused as flood, unknown or distrusted devices (for tests and status)."""

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
        """A winner said it took a wake (or how it ended): it is a device that answers,
        so trust it again."""
        self._expected = [e for e in self._expected if e.winner != result.device_id]
        self._results.append((self.now_s(), result.wake_id))
        self._forget(self.now_s())
        if result.device_id in self._devices:
            self._devices[result.device_id].distrusted_until_s = -1e18

    def verdict(self, ours: Claim, *, connected: bool) -> Verdict:
        """At the end of our wait: who answers the wake word of ``ours``."""
        self._check_expected()
        if not connected:
            return Verdict(True, self.device_id, "offline")
        rivals = {
            claim.device_id: claim
            for _, claim in self._claims
            if claim.phrase == ours.phrase and abs(claim.heard_at_s - ours.heard_at_s) <= MATCH_S
            and self._device(claim.device_id).distrusted_until_s <= self.now_s()
        }  # fmt: skip
        if not rivals:
            return Verdict(True, self.device_id, "alone", 0, ours.level_db)
        if len(rivals) > MAX_RIVALS:
            return Verdict(True, self.device_id, "flood", len(rivals), ours.level_db)
        best = min([ours, *rivals.values()], key=lambda c: (-c.level_db, c.device_id))
        if best.device_id == self.device_id:
            return Verdict(True, self.device_id, "loudest", len(rivals), ours.level_db)
        if best.wake_id not in {wake_id for _, wake_id in self._results}:
            due_s = self.now_s() + self.settings.result_timeout_s
            self._expected.append(_Expected(best.device_id, best.wake_id, due_s))
        return Verdict(False, best.device_id, "lost", len(rivals), best.level_db)

    def _check_expected(self) -> None:
        now = self.now_s()
        overdue = [e for e in self._expected if e.due_s <= now]
        self._expected = [e for e in self._expected if e.due_s > now]
        for expected in overdue:
            self._device(expected.winner).distrusted_until_s = now + self.settings.distrust_s

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
