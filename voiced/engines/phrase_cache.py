"""Synthesised audio of short replies, kept so a reply said before plays at once.

Two kinds of entry:
- remembered: any short phrase once said, least recently used dropped first;
- pinned: phrases prepared ahead of time in named groups ("fixed" replies that
  never change, "clock" replies that change each minute). Pinning a group
  replaces that group's phrases; pinned phrases are never dropped for space.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

PHRASE_MAX_CHARS = 48
"""Replies this short are kept once synthesised: intent replies ("Louder.", "Timer
cancelled.") recur, and replaying them saves the 60-140 ms a synthesis costs."""
REMEMBERED_ENTRIES = 64
"""At most this many remembered phrases (under 3 s of audio each, under 9 MB in all)."""


class PhraseCache:
    """Thread-safe: filled from the TTS worker, read from any thread."""

    def __init__(self, max_remembered: int = REMEMBERED_ENTRIES) -> None:
        self._max_remembered = max_remembered
        self._remembered: OrderedDict[str, list[bytes]] = OrderedDict()
        self._groups: dict[str, dict[str, list[bytes]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def accepts(text: str) -> bool:
        return 0 < len(text) <= PHRASE_MAX_CHARS

    def get(self, text: str) -> list[bytes] | None:
        with self._lock:
            for group in self._groups.values():
                if text in group:
                    return group[text]
            chunks = self._remembered.get(text)
            if chunks is not None:
                self._remembered.move_to_end(text)
            return chunks

    def remember(self, text: str, chunks: list[bytes]) -> None:
        with self._lock:
            self._remembered[text] = chunks
            self._remembered.move_to_end(text)
            while len(self._remembered) > self._max_remembered:
                self._remembered.popitem(last=False)

    def pin(self, group: str, phrases: dict[str, list[bytes]]) -> None:
        """Make ``phrases`` the whole of ``group``: earlier phrases of it are dropped."""
        with self._lock:
            self._groups[group] = dict(phrases)

    def pinned(self, group: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._groups.get(group, ()))
