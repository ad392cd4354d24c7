"""Runs the real pipeline in-process on synthesized speech, for the pipeline tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiced.audio.sinks import AlignedSink, MemoryWriter, SequentialSink
from voiced.audio.sources import WavFileSource
from voiced.engines.loader import Engines
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventBus
from voiced.pipeline.runner import run_stream
from voiced.pipeline.turn import TurnRecord
from voiced.settings import Settings
from voiced.speech_synth import write_wav

RUN_TIMEOUT_S = 300


@dataclass
class PipelineRun:
    turns: list[TurnRecord]
    output: np.ndarray
    """The reply audio, 16 kHz int16 (time-aligned with the input when realtime)."""
    events: list[Event] = field(default_factory=list)
    onsets_samples: list[int] = field(default_factory=list)
    max_loop_cpu_ms: float = 0.0
    """The most CPU the event-loop thread spent between two ticks of a 5 ms timer:
    what ran on the loop itself. Unlike the wall-clock lag it does not grow when
    the loop merely waits for a core that the model threads are using."""
    loop_ticks: int = 0
    volume: float = 1.0
    """The assistant's volume when the run ended."""
    timers_pending: int = 0


async def loop_monitor(cpu_ms: list[float], interval_s: float = 0.005) -> None:
    """Appends, per tick, the CPU ms the loop thread used since the previous tick."""
    while True:
        before = time.thread_time()
        await asyncio.sleep(interval_s)
        cpu_ms.append((time.thread_time() - before) * 1000.0)


def run_pipeline(
    engines: Engines, settings: Settings, pcm: bytes, tmp_path: Path, *,
    wake_mode: bool, realtime: bool,
    on_event: Callable[[Assistant, Event], None] | None = None,
) -> PipelineRun:  # fmt: skip
    """``on_event`` sees each event as it is published, with the assistant (a test
    can act on it: mute when the command starts...)."""
    wav = tmp_path / "input.wav"
    write_wav(wav, pcm)
    writer = MemoryWriter()
    sink = AlignedSink(writer) if realtime else SequentialSink(writer)
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    assistant = Assistant(settings, engines, sink, bus, wake_mode=wake_mode)
    if on_event is not None:
        bus.add_listener(lambda event: on_event(assistant, event))
    turns: list[TurnRecord] = []
    assistant.on_turn_done.append(turns.append)
    loop_cpu_ms: list[float] = []

    async def main() -> None:
        monitor = asyncio.create_task(loop_monitor(loop_cpu_ms))
        try:
            source = WavFileSource(wav, realtime=realtime)
            await asyncio.wait_for(run_stream(assistant, source, realtime=realtime),
                                   RUN_TIMEOUT_S)  # fmt: skip
        finally:
            monitor.cancel()
            await assistant.close()

    asyncio.run(main())
    onsets = list(getattr(sink, "onset_samples", []))
    return PipelineRun(
        turns=turns, output=np.frombuffer(bytes(writer.pcm), dtype="<i2"), events=events,
        onsets_samples=onsets, max_loop_cpu_ms=max(loop_cpu_ms, default=0.0),
        loop_ticks=len(loop_cpu_ms), volume=assistant.volume,
        timers_pending=assistant.timers.pending,
    )  # fmt: skip


def voice_turns(run: PipelineRun) -> list[TurnRecord]:
    return [t for t in run.turns if t.kind == "voice"]


def rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
