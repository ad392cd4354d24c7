"""The frame loop: audio source -> assistant, and a clean end when a file ends."""

from __future__ import annotations

import asyncio
import time

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.room import RoomSimulator
from voiced.audio.sources import AudioSource
from voiced.pipeline.assistant import Assistant

MAX_TAIL_S = 600.0
"""After the input ends, keep time running this long at most for timers and replies."""
_SILENT_FRAME = bytes(FRAME_SAMPLES * 2)


async def run_stream(
    assistant: Assistant, source: AudioSource, *, realtime: bool, wait_for_timers: bool = True,
    room: RoomSimulator | None = None,
) -> None:
    """Feed every frame of ``source``; when it ends, finish what is in progress.

    Without ``realtime`` (a file read as fast as possible) a turn takes no stream
    time: the loop waits for each turn before reading on, so results do not
    depend on the machine's speed. With a ``room`` (already listening to the sink),
    every frame, the play-out's too, is heard with the room's echo and noise.
    """
    async for frame in source.frames():
        await assistant.feed(room.mix(frame) if room is not None else frame)
        if not realtime:
            await assistant.wait_turn()
    await _play_out(assistant, realtime=realtime, wait_for_timers=wait_for_timers, room=room)


async def _play_out(
    assistant: Assistant, *, realtime: bool, wait_for_timers: bool, room: RoomSimulator | None
) -> None:
    """Silence after the input's end, so endpointing, replies and timers can finish
    (and the time-aligned output keeps running as a sound card would)."""
    start_sample = assistant.position_samples
    start_wall_s = time.monotonic()
    max_samples = int(MAX_TAIL_S * PIPELINE_RATE_HZ)
    sample = start_sample
    while (
        assistant.has_pending_work(include_timers=wait_for_timers)
        and sample - start_sample < max_samples
    ):
        frame = AudioFrame(_SILENT_FRAME, sample)
        sample = frame.end_sample
        if realtime:
            deadline_s = start_wall_s + (frame.start_sample - start_sample) / PIPELINE_RATE_HZ
            delay_s = deadline_s - time.monotonic()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
        await assistant.feed(room.mix(frame) if room is not None else frame)
        if not realtime:
            await assistant.wait_turn()
