"""How loudly this device heard the wake word, over its own noise floor.

Measured the same way on every device so that their claims compare: the wake word's
level (the 90th percentile of 10 ms frame levels over its last 0.8 s) minus the
room's floor (the quietest 30 ms of the last 4 s, never below -80 dBFS, which is
where a digital silence would put it). Both in dB, so a microphone's own gain
cancels out and what is left is how far the speaker was.
"""

from __future__ import annotations

from collections import deque

import numpy as np

FRAME_SAMPLES = 160
HISTORY_FRAMES = 400
"""4 s of 10 ms frame levels."""
WAKE_FRAMES = 80
"""The wake word's last 0.8 s."""
FLOOR_MIN_DBFS = -80.0
SMOOTHING_FRAMES = 3


class LoudnessMeter:
    """Fed every piece of audio the wake word is scored on (in the listener thread)."""

    def __init__(self) -> None:
        self._levels_dbfs: deque[float] = deque(maxlen=HISTORY_FRAMES)
        self._tail = np.zeros(0, dtype=np.float32)

    def feed(self, pcm: bytes) -> None:
        samples = np.concatenate([self._tail, np.frombuffer(pcm, dtype="<i2").astype(np.float32)])
        whole = samples.size // FRAME_SAMPLES * FRAME_SAMPLES
        self._tail = samples[whole:]
        if not whole:
            return
        frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        self._levels_dbfs.extend(_dbfs(rms).tolist())

    def wake_level_db(self) -> float:
        """The last wake word's level over the floor (0 when nothing was heard yet)."""
        if not self._levels_dbfs:
            return 0.0
        levels = np.array(self._levels_dbfs)
        word = float(np.percentile(levels[-WAKE_FRAMES:], 90))
        if levels.size >= SMOOTHING_FRAMES:
            kernel = np.ones(SMOOTHING_FRAMES) / SMOOTHING_FRAMES
            smoothed = np.convolve(levels, kernel, mode="valid")
        else:
            smoothed = levels
        floor = max(FLOOR_MIN_DBFS, float(smoothed.min()))
        return round(max(0.0, word - floor), 2)

    def reset(self) -> None:
        self._levels_dbfs.clear()
        self._tail = np.zeros(0, dtype=np.float32)


def _dbfs(rms: np.ndarray) -> np.ndarray:
    dbfs: np.ndarray = 20.0 * np.log10(np.maximum(rms, 1e-3) / 32768.0)
    return dbfs
