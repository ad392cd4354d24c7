"""Rate-limited warnings, so a flapping broker or a broken hook cannot flood the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 60.0
MAX_KEYS = 256


class RateLimitedLog:
    """Logs the first message of each key, then at most one per ``interval_s``,
    saying how many like it were held back in between."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """True when the message was written, False when it was held back."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) >= MAX_KEYS and key not in self._last:
            self._last.clear()
            self._held.clear()
        held = self._held.pop(key, 0)
        self._last[key] = now
        if held:
            message += " (%d more like this in the last %.0f s)"
            args = (*args, held, now - (last or now))
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)
