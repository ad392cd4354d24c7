"""Timers set by voice, kept on the stream clock so tests run them without sleeping."""

from __future__ import annotations

import heapq
import itertools


class TimerBook:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._ids = itertools.count()

    def add(self, due_ms: float, label: str) -> None:
        heapq.heappush(self._heap, (due_ms, next(self._ids), label))

    def due(self, now_ms: float) -> list[str]:
        """Labels of the timers whose time has come (removed from the book)."""
        fired: list[str] = []
        while self._heap and self._heap[0][0] <= now_ms:
            fired.append(heapq.heappop(self._heap)[2])
        return fired

    def cancel_all(self) -> int:
        count = len(self._heap)
        self._heap.clear()
        return count

    @property
    def pending(self) -> int:
        return len(self._heap)

    @property
    def next_due_ms(self) -> float | None:
        return self._heap[0][0] if self._heap else None
