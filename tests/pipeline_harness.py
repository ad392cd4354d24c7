"""Runs the real pipeline in-process on synthesized speech, for the pipeline tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiced.audio.room import RoomSimulator, attach_room
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

ANNOUNCEMENTS = (
    "Here is the news. The river festival opens on Saturday with music on both banks, "
    "and the bridge will be closed to cars from noon until midnight.",
    "The library has new opening hours: from nine in the morning until eight at night "
    "on weekdays, and until five on Saturdays.",
    "Tomorrow will be cloudy in the morning, with sunny spells in the afternoon and a "
    "light wind from the north west.",
    "Remember that the recycling goes out on Thursday this week, because of the "
    "holiday on Wednesday.",
    "The train to the coast leaves every half hour, and the last one back is at ten past eleven.",
)
"""Long replies nobody talks over: what the echo tests play to teach the canceller
a room and to show it is never cut by its own voice."""


@dataclass
class PipelineRun:
    turns: list[TurnRecord]
    output: np.ndarray
    """The reply audio, 16 kHz int16 (time-aligned with the input when realtime)."""
    events: list[Event] = field(default_factory=list)
    onsets_samples: list[int] = field(default_factory=list)
    volume: float = 1.0
    """The assistant's volume when the run ended."""
    timers_pending: int = 0
    room: RoomSimulator | None = None


def run_pipeline(
    engines: Engines, settings: Settings, pcm: bytes, tmp_path: Path, *,
    wake_mode: bool, realtime: bool,
    on_event: Callable[[Assistant, Event], None] | None = None, room: str | None = None,
) -> PipelineRun:  # fmt: skip
    """``on_event`` sees each event as it is published, with the assistant (a test
    can act on it: mute when the command starts...). ``room`` (a preset name or an
    impulse-response WAV, realtime only) plays the replies back into the input."""
    wav = tmp_path / "input.wav"
    write_wav(wav, pcm)
    writer = MemoryWriter()
    sink = AlignedSink(writer) if realtime else SequentialSink(writer)
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    simulator = attach_room(sink, room) if room is not None else None
    assistant = Assistant(settings, engines, sink, bus, wake_mode=wake_mode)
    if on_event is not None:
        bus.add_listener(lambda event: on_event(assistant, event))
    turns: list[TurnRecord] = []
    assistant.on_turn_done.append(turns.append)

    async def main() -> None:
        try:
            source = WavFileSource(wav, realtime=realtime)
            await asyncio.wait_for(
                run_stream(assistant, source, realtime=realtime, room=simulator), RUN_TIMEOUT_S
            )
        finally:
            await assistant.close()

    asyncio.run(main())
    onsets = list(getattr(sink, "onset_samples", []))
    return PipelineRun(
        turns=turns, output=np.frombuffer(bytes(writer.pcm), dtype="<i2"), events=events,
        onsets_samples=onsets, volume=assistant.volume,
        timers_pending=assistant.timers.pending, room=simulator,
    )  # fmt: skip


def voice_turns(run: PipelineRun) -> list[TurnRecord]:
    return [t for t in run.turns if t.kind == "voice"]


def rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
