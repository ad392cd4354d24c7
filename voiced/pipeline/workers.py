"""The worker threads: one per engine, so no model ever runs on the event loop."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Workers:
    """One thread per engine, so TTS of clause one overlaps generation of clause two."""

    listen: concurrent.futures.ThreadPoolExecutor
    asr: concurrent.futures.ThreadPoolExecutor
    slm: concurrent.futures.ThreadPoolExecutor
    tts: concurrent.futures.ThreadPoolExecutor

    @classmethod
    def create(cls) -> Workers:
        def pool(name: str) -> concurrent.futures.ThreadPoolExecutor:
            return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"voiced-{name}")

        return cls(pool("listen"), pool("asr"), pool("slm"), pool("tts"))

    def shutdown(self) -> None:
        for executor in (self.listen, self.asr, self.slm, self.tts):
            executor.shutdown(wait=True, cancel_futures=True)
