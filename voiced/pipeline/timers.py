"""Timers set by voice, kept on the stream clock so tests run them without sleeping.

Each timer fires once. With a state file the book is written on every change
(wall-clock due times, so a restart of the service keeps them); a timer that
came due while the service was down fires as soon as the book is loaded.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
MAX_TIMERS = 32
"""More than this at once is no kitchen: the oldest is kept, the new one refused."""


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    due_ms: float
    """When it fires, on the stream clock (ms from stream start)."""
    timer_id: int
    label: str
    name: str = ""


class TimerBook:
    def __init__(
        self, path: Path | None = None, *, wall_s: Callable[[], float] = time.time,
        now_ms: float = 0.0,
    ) -> None:  # fmt: skip
        self._heap: list[Timer] = []
        self._ids = itertools.count(1)
        self._path = path
        self._wall_s = wall_s
        if path is not None:
            self._load(path, now_ms)

    def add(self, due_ms: float, label: str, name: str = "", *, now_ms: float = 0.0) -> bool:
        """False (and nothing added) when MAX_TIMERS are already running."""
        if len(self._heap) >= MAX_TIMERS:
            return False
        if name:  # a name is one timer: setting it again replaces it
            self._heap = [t for t in self._heap if t.name != name]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, Timer(due_ms, next(self._ids), label, name))
        self._save(now_ms)
        return True

    def due(self, now_ms: float) -> list[str]:
        """Labels of the timers whose time has come (removed from the book)."""
        fired: list[str] = []
        while self._heap and self._heap[0].due_ms <= now_ms:
            fired.append(heapq.heappop(self._heap).label)
        if fired:
            self._save(now_ms)
        return fired

    def cancel(self, name: str | None = None, *, now_ms: float = 0.0) -> int:
        """Cancel the timer called ``name``, or every timer; returns how many."""
        before = len(self._heap)
        self._heap = [] if name is None else [t for t in self._heap if t.name != name]
        heapq.heapify(self._heap)
        self._save(now_ms)
        return before - len(self._heap)

    def cancel_all(self) -> int:
        return self.cancel(None)

    def running(self) -> list[Timer]:
        return sorted(self._heap)

    @property
    def pending(self) -> int:
        return len(self._heap)

    @property
    def next_due_ms(self) -> float | None:
        return self._heap[0].due_ms if self._heap else None

    # -- the state file -------------------------------------------------------

    def _save(self, now_ms: float) -> None:
        if self._path is None:
            return
        wall_s = self._wall_s()
        data = [{"due_wall_s": wall_s + (t.due_ms - now_ms) / 1000.0, "label": t.label,
                 "name": t.name} for t in sorted(self._heap)]  # fmt: skip
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"timers": data}), encoding="utf-8")
            tmp.replace(self._path)
        except OSError as err:
            _LOGGER.warning("timers: cannot write %s (%s); they will not survive a restart",
                            self._path, err)  # fmt: skip

    def _load(self, path: Path, now_ms: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))["timers"]
                wall_s = self._wall_s()
                for entry in entries[:MAX_TIMERS]:
                    due_ms = now_ms + (float(entry["due_wall_s"]) - wall_s) * 1000.0
                    heapq.heappush(self._heap, Timer(due_ms, next(self._ids),
                                                     str(entry["label"]), str(entry["name"])))
            except (OSError, ValueError, KeyError, TypeError) as err:
                _LOGGER.warning("timers: ignoring unreadable %s (%s)", path, err)
                self._heap.clear()
