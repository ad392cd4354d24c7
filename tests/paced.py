"""A paced, deterministic pipeline harness: the real Assistant, scripted engines.

Frames are fed one by one at real-time *pace* on a virtual clock (the stream
position), without sleeping: an engine call submitted at stream time t completes
when the stream reaches t + its scripted latency. So a 150 ms transcription
started at the first pause is still running while the silence goes on, exactly
as on a device, and the speculative path runs in every test.

Audio is symbolic: each 10 ms frame holds one code in all its samples, 0 for
silence, ``SPEECH_BASE + n`` for the n-th scripted phrase, ``WAKE_END`` for the
frame where the wake word ends. The scripted listener reads the codes (VAD with
no hangover), the scripted ASR turns the phrases present in an utterance back
into their text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiced.audio.format import FRAME_SAMPLES, AudioFrame
from voiced.audio.sinks import AlignedSink, AudioSink, MemoryWriter
from voiced.engines.asr import Transcript
from voiced.engines.loader import Engines, ModelPaths
from voiced.engines.wake_set import Detection
from voiced.errors import AudioError, EngineError
from voiced.house.arbiter import HouseArbiter
from voiced.intents.base import IntentHandler
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.listener import Heard
from voiced.pipeline.turn import TurnRecord
from voiced.settings import Settings, TtsSettings, replace_section

SPEECH_BASE = 1000
WAKE_END = 7
WAKE_CODE = 5
STOP_WORD_END = 9
"""The frame where the first [[wake.words]] word ends (its action from the settings)."""
SETTLE_SPINS = 60
RUN_TIMEOUT_S = 60
FRAME_MS = 10


def _codes(pcm: bytes) -> list[int]:
    samples = np.frombuffer(pcm, dtype="<i2")
    return [int(samples[i]) for i in range(0, samples.size, FRAME_SAMPLES)]


class ScriptedListener:
    """VAD and wake word read from the frame codes; no hangover, no noise."""

    has_wake = True

    def __init__(self, word_action: str | None = None) -> None:
        self.word_action = word_action
        """The action of the first [[wake.words]] word (None: no such word)."""

    def hear(self, pcm: bytes, *, score_wake: bool, detect_speech: bool) -> Heard:
        codes = _codes(pcm)
        wake = score_wake and WAKE_END in codes
        words = ()
        if self.word_action is not None and score_wake and STOP_WORD_END in codes:
            words = (Detection("open:alexa", self.word_action),)
        speech = detect_speech and bool(codes) and codes[-1] >= SPEECH_BASE
        return Heard(wake=wake, speech=speech, words=words)


class ManualExecutor(concurrent.futures.Executor):
    """Runs each job inline once the stream clock reaches its submit time + latency."""

    def __init__(self, latency_ms: float, now_ms: Callable[[], float]) -> None:
        self.latency_ms = latency_ms
        self.now_ms = now_ms
        self.pending: list[tuple[float, concurrent.futures.Future[Any], Callable[[], Any]]] = []
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.submitted += 1
        job = (self.now_ms() + self.latency_ms, future, lambda: fn(*args, **kwargs))
        if self.latency_ms <= 0:
            _run(job[1], job[2])
        else:
            self.pending.append(job)
        return future

    def run_due(self) -> int:
        now = self.now_ms()
        due = [job for job in self.pending if job[0] <= now]
        self.pending = [job for job in self.pending if job[0] > now]
        for _, future, call in due:
            _run(future, call)
        return len(due)

    def run_all(self) -> None:
        jobs, self.pending = self.pending, []
        for _, future, call in jobs:
            _run(future, call)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _, future, _call in self.pending:
            future.cancel()
        self.pending.clear()


def _run(future: concurrent.futures.Future[Any], call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
        future.set_exception(err)


class ScriptedAsr:
    def __init__(self, phrases: list[str]) -> None:
        self.phrases = phrases
        self.calls: list[str] = []

    def transcribe(
        self, pcm: bytes, *, trimmed: bool | None = None, careful: bool = False,
        abandon: Any = None,
    ) -> Transcript:  # fmt: skip
        seen: list[int] = []
        for code in _codes(pcm):
            if code >= SPEECH_BASE and (not seen or seen[-1] != code):
                seen.append(code)
        text = " ".join(self.phrases[code - SPEECH_BASE] for code in seen)
        self.calls.append(text)
        return Transcript(text=text, audio_ms=len(pcm) / 32.0, compute_ms=150.0)


class ScriptedTts:
    sample_rate_hz = 16_000

    def __init__(self, ms_per_word: int = 100) -> None:
        self.ms_per_word = ms_per_word
        self.texts: list[str] = []
        self.phrases: Any = None

    def synthesize(
        self, text: str, cancel: Any = None, *, repeatable: bool = False
    ) -> Iterator[bytes]:
        self.texts.append(text)
        samples = 16 * self.ms_per_word * max(1, len(text.split()))
        yield np.full(samples, 3000, dtype="<i2").tobytes()

    def prepare_phrases(self, group: str, phrases: Any) -> None:
        pass


class ScriptedSlm:
    def __init__(self, reply: str = "The answer is forty two.") -> None:
        self.reply_text = reply
        self.histories: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def reply(self, system_prompt: str, history: list[dict[str, str]], *, max_tokens: int) -> str:
        return self.reply_text

    def stream_reply(
        self, system_prompt: str, history: list[dict[str, str]], *, max_tokens: int,
        cancel: Any = None, proceed: Any = None,
    ) -> Iterator[str]:  # fmt: skip
        self.histories.append(list(history))
        for word in self.reply_text.split(" "):
            yield word + " "


class FailingTts(ScriptedTts):
    """Synthesis that fails on every call after the first ``works`` calls."""

    def __init__(self, works: int = 0) -> None:
        super().__init__()
        self.works = works

    def synthesize(
        self, text: str, cancel: Any = None, *, repeatable: bool = False
    ) -> Iterator[bytes]:
        if len(self.texts) >= self.works:
            self.texts.append(text)
            raise EngineError("speech synthesis failed: the voice is broken")
        yield from super().synthesize(text, cancel, repeatable=repeatable)


class HangingSink(AlignedSink):
    """A speaker that vanished: audio goes nowhere and it never reports drained."""

    def __init__(self) -> None:
        super().__init__(MemoryWriter())

    def tick(self, num_samples: int) -> None:
        pass

    async def drained(self) -> None:
        await asyncio.Event().wait()


class ReopeningSink(AlignedSink):
    """A speaker that vanished and comes back on the ``works_at``-th reopen."""

    def __init__(self, works_at: int = 2) -> None:
        super().__init__(MemoryWriter())
        self.broken = True
        self.works_at = works_at
        self.reopens = 0

    def tick(self, num_samples: int) -> None:
        if not self.broken:
            super().tick(num_samples)

    async def drained(self) -> None:
        if self.broken:
            await asyncio.Event().wait()
        await super().drained()

    def reopen(self) -> None:
        self.reopens += 1
        if self.reopens < self.works_at:
            raise AudioError("cannot open speaker 'USB Audio': device unavailable")
        self.clear()
        self.broken = False


@dataclass
class Step:
    codes: list[int] = field(default_factory=list)
    action: Callable[[Assistant], object] | None = None


class Script:
    """What the microphone hears, and what the user does, in order."""

    def __init__(self) -> None:
        self.phrases: list[str] = []
        self.steps: list[Step] = []

    def silence(self, ms: int) -> Script:
        self.steps.append(Step([0] * (ms // FRAME_MS)))
        return self

    def say(self, text: str, ms: int | None = None) -> Script:
        code = SPEECH_BASE + len(self.phrases)
        self.phrases.append(text)
        length = ms if ms is not None else 200 + 120 * len(text.split())
        self.steps.append(Step([code] * (length // FRAME_MS)))
        return self

    def wake(self) -> Script:
        self.steps.append(Step([WAKE_CODE] * 29 + [WAKE_END]))
        return self

    def stop_word(self) -> Script:
        """The first [[wake.words]] word (a stop word, say), without the wake word."""
        self.steps.append(Step([WAKE_CODE] * 29 + [STOP_WORD_END]))
        return self

    def do(self, action: Callable[[Assistant], object]) -> Script:
        self.steps.append(Step(action=action))
        return self


@dataclass
class PacedRun:
    assistant: Assistant
    events: list[Event]
    turns: list[TurnRecord]
    asr: ScriptedAsr
    tts: ScriptedTts
    slm: ScriptedSlm
    sink: AudioSink

    def of(self, kind: EventType) -> list[Event]:
        return [e for e in self.events if e.type is kind]

    def after(self, kind: EventType) -> list[Event]:
        """Events published after the first event of ``kind``."""
        index = next(i for i, e in enumerate(self.events) if e.type is kind)
        return self.events[index + 1 :]

    def voice_turns(self) -> list[TurnRecord]:
        return [t for t in self.turns if t.kind == "voice"]


def paced_settings(**listen: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base, listen=dataclasses.replace(base.listen, **listen),
        tts=TtsSettings(prepare_clock_replies=False),
    )  # fmt: skip


def run_paced(
    script: Script, *, settings: Settings | None = None, wake_mode: bool = False,
    sink: AudioSink | None = None, asr_ms: float = 150, slm_ms: float = 100,
    tts_ms: float = 30, slm_reply: str = "The answer is forty two.",
    state_dir: Path | None = None, tts: ScriptedTts | None = None,
    house: Callable[[Callable[[], float]], HouseArbiter] | None = None,
    intents: list[IntentHandler] | None = None,
) -> PacedRun:  # fmt: skip
    """Feeds ``script`` through a real Assistant at the pace of the stream. ``house``
    makes the arbiter, given a wall clock (seconds) that follows the stream."""
    settings = settings or paced_settings()
    if settings.audio.echo_cancel == "auto":
        # The scripted listener hears the script, not the audio: nothing to cancel.
        settings = replace_section(settings, "audio", echo_cancel="off")
    asr, slm = ScriptedAsr(script.phrases), ScriptedSlm(slm_reply)
    tts = tts or ScriptedTts()
    unused = Path("/nonexistent")
    engines = Engines(ModelPaths(unused, unused, unused, names={"wake": "hey_jarvis"}),
                      asr=asr, tts=tts, slm=slm, wake=None)  # type: ignore[arg-type]  # fmt: skip
    sink = sink or AlignedSink(MemoryWriter())
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    position = [0]

    def now_ms() -> float:
        return position[0] / 16.0

    executors = {name: ManualExecutor(ms, now_ms) for name, ms in
                 (("listen", 0), ("asr", asr_ms), ("slm", slm_ms), ("tts", tts_ms))}  # fmt: skip
    assistant = Assistant(
        settings, engines, sink, bus, wake_mode=wake_mode,
        listener=ScriptedListener(settings.wake.words[0].action if settings.wake.words else None),
        executors=executors, clock=lambda: 0.0, state_dir=state_dir,
        house=house(lambda: now_ms() / 1000.0) if house is not None else None,
        extra_intents=intents,
    )  # fmt: skip
    turns: list[TurnRecord] = []
    assistant.on_turn_done.append(turns.append)

    async def settle() -> None:
        for _ in range(SETTLE_SPINS):
            await asyncio.sleep(0)
        while sum(ex.run_due() for ex in executors.values()):
            for _ in range(SETTLE_SPINS):
                await asyncio.sleep(0)

    async def main() -> None:
        try:
            for step in script.steps:
                if step.action is not None:
                    step.action(assistant)
                    await settle()
                for code in step.codes:
                    pcm = np.full(FRAME_SAMPLES, code, dtype="<i2").tobytes()
                    frame = AudioFrame(pcm, position[0])
                    position[0] = frame.end_sample
                    await assistant.feed(frame)
                    await settle()
        finally:
            # A worker thread finishes what it was given even while the pipeline
            # closes: run whatever is still queued until close() returns.
            closing = asyncio.ensure_future(assistant.close())
            while not closing.done():
                for ex in executors.values():
                    ex.run_all()
                await asyncio.sleep(0)
            await closing

    asyncio.run(asyncio.wait_for(main(), RUN_TIMEOUT_S))
    return PacedRun(assistant, events, turns, asr, tts, slm, sink)
