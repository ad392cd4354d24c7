"""A thread-safe FIFO of playback segments, read in sample-exact slices.

Aligned sinks read it once per input tick on the event loop; the sound-card
sink reads it from the PortAudio callback thread. The lock is only held for
list operations, never across I/O.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class PlaybackQueue:
    """Queued int16 mono segments (one per ``append``) at one sample rate."""

    def __init__(self) -> None:
        self._segments: deque[np.ndarray] = deque()
        self._head_offset = 0
        """Samples of the first segment already read."""
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending_samples(self) -> int:
        return self._pending

    def append(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        with self._lock:
            self._segments.append(samples.astype(np.int16, copy=False))
            self._pending += int(samples.size)

    def read(self, max_samples: int) -> tuple[np.ndarray, list[int]]:
        """Up to ``max_samples`` samples, and the offsets in them where a segment began."""
        parts: list[np.ndarray] = []
        starts: list[int] = []
        taken = 0
        with self._lock:
            while taken < max_samples and self._segments:
                head = self._segments[0]
                if self._head_offset == 0:
                    starts.append(taken)
                part = head[self._head_offset : self._head_offset + max_samples - taken]
                parts.append(part)
                taken += int(part.size)
                self._head_offset += int(part.size)
                if self._head_offset >= head.size:
                    self._segments.popleft()
                    self._head_offset = 0
            self._pending -= taken
        data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return data, starts

    def clear(self) -> int:
        """Drop everything not yet read; returns the samples dropped."""
        with self._lock:
            dropped = self._pending
            self._segments.clear()
            self._head_offset = 0
            self._pending = 0
        return dropped
