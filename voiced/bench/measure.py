"""Measuring one utterance: the streaming pipeline and a sequential baseline.

Streaming: the utterance goes through the real pipeline exactly as
``voiced run --no-wake --realtime`` runs it (paced 1x, time-aligned output).
End of speech is found in the input audio itself and first reply audio in the
aligned output, so the daemon's own clocks are not trusted for the headline.

Baseline: the same models used the way Home Assistant's Assist pipeline uses
them: endpoint after 0.7 s of silence, full transcript (30 s window), full
reply text, full synthesis, then play.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, samples_to_ms
from voiced.audio.sinks import AlignedSink, MemoryWriter
from voiced.audio.sources import WavFileSource
from voiced.bench.corpus import Utterance
from voiced.engines.loader import Engines
from voiced.intents.base import TimerView
from voiced.intents.builtin import BuiltinIntents
from voiced.intents.normalize import normalize
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.endpointer import Endpointer, EndpointerSettings, EndpointEventType
from voiced.pipeline.events import EventBus
from voiced.pipeline.model_prompt import clock_message, mentions_time, system_prompt
from voiced.pipeline.runner import run_stream
from voiced.pipeline.turn import TurnRecord
from voiced.pipeline.vad import WebRtcVad
from voiced.settings import Settings
from voiced.speech_synth import silence

LEAD_S, TAIL_S = 0.5, 0.3
SPEECH_LEVEL = 200
"""|sample| at or above this counts as speech when finding its end (about -44 dBFS)."""
BASELINE_SILENCE_MS = 700


@dataclass
class StreamResult:
    transcript: str = ""
    reply: str = ""
    intent: str | None = None
    latency_ms: float | None = None
    """End of speech (from the audio) to first reply audio (from the aligned output)."""
    stages_ms: dict[str, float] = field(default_factory=dict)
    """Stage boundaries in ms relative to the end of speech."""


@dataclass
class BaselineResult:
    transcript: str = ""
    reply: str = ""
    latency_ms: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)


def end_of_speech_sample(pcm: bytes) -> int:
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    loud = np.nonzero(samples >= SPEECH_LEVEL)[0]
    return int(loud[-1]) + 1 if loud.size else 0


async def measure_streaming(
    engines: Engines, settings: Settings, utt: Utterance, wav_path: str
) -> StreamResult:
    """One utterance through the real pipeline, paced 1x."""
    writer = MemoryWriter()
    sink = AlignedSink(writer)
    turns: list[TurnRecord] = []
    assistant = Assistant(settings, engines, sink, EventBus(), wake_mode=False)
    assistant.on_turn_done.append(turns.append)
    try:
        source = WavFileSource(Path(wav_path), realtime=True)
        await run_stream(assistant, source, realtime=True, wait_for_timers=False)
    finally:
        await assistant.close()
    eos = LEAD_S * PIPELINE_RATE_HZ + end_of_speech_sample(utt.pcm)
    eos_ms = samples_to_ms(int(eos))
    out = np.frombuffer(bytes(writer.pcm), dtype="<i2")
    after = np.nonzero(out[int(eos):])[0]
    result = StreamResult()
    if after.size:
        result.latency_ms = samples_to_ms(int(after[0]))
    voice = [t for t in turns if t.kind == "voice"]
    if voice:
        turn = voice[0]
        result.transcript, result.reply, result.intent = turn.transcript, turn.reply, turn.intent
        result.stages_ms = _stages(turn, eos_ms)
    return result


def _stages(turn: TurnRecord, eos_ms: float) -> dict[str, float]:
    marks = {
        "endpoint": turn.endpoint_ms, "asr_done": turn.asr_done_ms,
        "first_token": turn.first_token_ms, "first_clause": turn.first_chunk_ms,
        "first_audio": turn.first_audio_ms, "done": turn.done_ms,
    }  # fmt: skip
    return {name: round(value - eos_ms, 1) for name, value in marks.items() if value is not None}


def input_pcm(utt: Utterance) -> bytes:
    return silence(LEAD_S) + utt.pcm + silence(TAIL_S)


def baseline_endpoint_ms(pcm: bytes, eos_sample: int) -> float:
    """Where an endpointer waiting for 0.7 s of silence commits, after the end of speech."""
    vad = WebRtcVad(2)
    endpointer = Endpointer(EndpointerSettings(
        silence_end_ms=BASELINE_SILENCE_MS, speculative_silence_ms=None,
        timeout_no_speech_ms=None,
    ))  # fmt: skip
    padded = pcm + silence(2.0)
    for start in range(0, len(padded) - FRAME_SAMPLES * 2 + 1, FRAME_SAMPLES * 2):
        frame = padded[start : start + FRAME_SAMPLES * 2]
        for event in endpointer.process(vad.is_speech(frame), 10.0):
            if event.type is EndpointEventType.SPEECH_END:
                return samples_to_ms(event.position_sample - eos_sample)
    return float(BASELINE_SILENCE_MS)


def measure_baseline(engines: Engines, settings: Settings, utt: Utterance) -> BaselineResult:
    """Sequential: endpoint, full transcript, full reply, full synthesis, then play."""
    assert engines.asr is not None and engines.tts is not None
    pcm = input_pcm(utt)
    eos = int(LEAD_S * PIPELINE_RATE_HZ) + end_of_speech_sample(utt.pcm)
    endpoint_ms = baseline_endpoint_ms(pcm, eos)
    started = time.perf_counter()
    transcript = engines.asr.transcribe(pcm, trimmed=False).text
    asr_ms = (time.perf_counter() - started) * 1000
    reply = _full_reply(engines, settings, transcript)
    reply_ms = (time.perf_counter() - started) * 1000
    if reply:
        engines.tts.synthesize_all(reply)
    tts_ms = (time.perf_counter() - started) * 1000
    return BaselineResult(
        transcript=transcript, reply=reply, latency_ms=endpoint_ms + tts_ms,
        stages_ms={"endpoint": endpoint_ms, "asr_done": endpoint_ms + asr_ms,
                   "reply_done": endpoint_ms + reply_ms, "first_audio": endpoint_ms + tts_ms},
    )  # fmt: skip


def _full_reply(engines: Engines, settings: Settings, text: str) -> str:
    """The whole reply text at once: a built-in intent, else the SLM run to the end."""
    found = BuiltinIntents().match(normalize(text), _NoControls())
    if found is not None:
        return found.reply
    if engines.slm is None:
        return ""
    # The prompt the streaming path's responder uses (same static-prompt cache entry).
    prompt = system_prompt(settings.slm.system_prompt, [])
    clock = [clock_message()] if mentions_time(text) else []
    messages = [*clock, {"role": "user", "content": text}]
    return engines.slm.reply(prompt, messages,
                             max_tokens=settings.slm.max_reply_tokens).strip()  # fmt: skip


class _NoControls:
    """A world with no timers at full volume (intents only read it)."""

    volume = 1.0

    def timers(self) -> list[TimerView]:
        return []

    def local_time(self) -> tuple[int, int, int, int, int]:
        now = time.localtime()
        return now.tm_hour, now.tm_min, now.tm_wday, now.tm_mday, now.tm_mon


def run_streaming(
    engines: Engines, settings: Settings, utt: Utterance, wav_path: str
) -> StreamResult:
    return asyncio.run(measure_streaming(engines, settings, utt, wav_path))
