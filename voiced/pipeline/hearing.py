"""The hearing side: which detectors each frame needs, run in the listener thread.

Waiting for the wake word alone (the state a device spends its life in) goes in
30 ms batches, the wake model's own stride, so the thread hand-off costs a third
as much. The pre-roll keeps the last 300 ms heard while idle, for an utterance
that starts before the VAD is sure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from typing import Protocol

from voiced.audio.format import FRAME_SAMPLES
from voiced.pipeline.listener import Heard

PREROLL_MS = 300
WAKE_BATCH_BYTES = 3 * FRAME_SAMPLES * 2
NOTHING_HEARD = Heard(wake=False, speech=False)


class Ears(Protocol):
    """voiced.pipeline.listener.Listener, or a scripted one in tests."""

    def hear(self, pcm: bytes, *, score_wake: bool, detect_speech: bool) -> Heard: ...


class Hearing:
    def __init__(self, ears: Ears, executor: concurrent.futures.Executor) -> None:
        self.ears = ears
        self.executor = executor
        self.preroll: deque[bytes] = deque(maxlen=PREROLL_MS // 10)
        self._wake_batch = bytearray()

    async def hear(self, pcm: bytes, *, score_wake: bool, detect_speech: bool) -> Heard:
        if score_wake and not detect_speech:
            self._wake_batch += pcm
            if len(self._wake_batch) < WAKE_BATCH_BYTES:
                return NOTHING_HEARD
            pcm, self._wake_batch = bytes(self._wake_batch), bytearray()
        elif self._wake_batch:
            self._wake_batch.clear()
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: self.ears.hear(
                pcm, score_wake=score_wake, detect_speech=detect_speech),
        )  # fmt: skip

    def take_preroll(self) -> bytearray:
        audio = bytearray(b"".join(self.preroll))
        self.preroll.clear()
        return audio
