"""`voiced bench --room`: echo cancellation and interrupting by voice, per simulated room.

Each room gets one continuous stream, as a daemon would hear it: the canceller's
state carries from reply to reply. The microphone path is the pipeline's own
(voiced.pipeline.mic_path, voiced.pipeline.barge_in, webrtcvad, the wake word),
fed frame by frame without the ASR and the model in between, so 50 replies per
room take seconds, not minutes:

* **self-interruptions**: replies (Piper speech) with no user, counted each time
  the debounced speech-over-reply detector would have stopped one (goal 0);
* **false wake words** during those replies;
* **echo return loss enhancement** over those replies after the canceller has
  converged: microphone power over cleaned power;
* **barge-in reaction**: the user speaks a command during a reply; user speech
  start to playback stop (the detector's decision plus the 10 ms frame after which
  the sink stops), median and p95, and how many were missed;
* **double talk**: Whisper's word error rate on the words spoken over the reply
  (what the pipeline hears) against the same words spoken in the quiet room;
* **CPU** of the canceller per second of audio.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

from voiced.audio.echo_cancel import FarEnd, MicCleaner, make_processor
from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.room import ROOMS, RoomSimulator, load_room
from voiced.engines.base import WakeWord
from voiced.engines.loader import Engines, load_engines
from voiced.intents.normalize import normalize
from voiced.models.manifest import Role
from voiced.pipeline.barge_in import SpeechOverReply
from voiced.pipeline.mic_path import counts_as_speech
from voiced.pipeline.vad import WebRtcVad
from voiced.settings import Settings
from voiced.speech_synth import speak_16k

REPLIES = (
    "It is a quarter past ten in the morning.",
    "The weather today is sunny with a light breeze from the west.",
    "Paris is the capital of France, famous for its museums and cafes.",
    "A spider has eight legs and most of them spin silk.",
    "I have set a timer for ten minutes; I will tell you when it rings.",
    "The moon goes round the earth about once every twenty seven days.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Sure, here is a joke: why did the scarecrow win a prize? He was outstanding in his field.",
    "The Pacific is the largest ocean, covering about a third of the planet.",
    "Bananas are berries, but strawberries, strangely enough, are not.",
)
COMMANDS = (
    "What time is it?",
    "Set a timer for five minutes.",
    "Turn the volume down.",
    "Stop, tell me the weather instead.",
    "What day is it today?",
)
GAP_S = 1.0
USER_AT_S = 1.2
"""The user starts this long into a reply."""
MISS_AFTER_S = 2.0


@dataclass
class RoomFigures:
    room: str
    replies: int
    self_interruptions: int
    false_wakes_during_playback: int
    erle_db: float
    converged_after_s: float | None
    delay_ms: float | None
    interruptions: int
    missed: int
    reaction_ms: list[float] = field(default_factory=list)
    wer_over_reply: float = 0.0
    wer_in_quiet: float = 0.0
    canceller_cpu_per_audio_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        reactions = out.pop("reaction_ms")
        out["reaction_median_ms"] = statistics.median(reactions) if reactions else None
        out["reaction_p95_ms"] = (
            float(np.percentile(reactions, 95)) if reactions else None
        )  # fmt: skip
        return out


class MicPathModel:
    """One room's microphone path, frame by frame, as Assistant.feed runs it."""

    def __init__(self, room: str, wake: WakeWord | None, min_speech_ms: int) -> None:
        self.room = RoomSimulator(load_room(room))
        self.far_end = FarEnd()
        self.cleaner = MicCleaner(make_processor(echo_cancel=True, noise_suppression=False),
                                  self.far_end, echo_cancel=True)  # fmt: skip
        self.vad = WebRtcVad(3)
        self.wake = wake
        if wake is not None:
            wake.reset()
        self.over_reply = SpeechOverReply(min_speech_ms)
        self.position = 0
        self.mic_power = self.clean_power = 0.0
        self.heard: list[np.ndarray] = []

    def step(self, user: np.ndarray, played: np.ndarray) -> tuple[bool, bool]:
        """One 10 ms frame: (barge-in decided, wake word heard)."""
        frame = self.room.mix(AudioFrame(user.astype("<i2").tobytes(), self.position))
        self.room.played(self.position, played)
        self.far_end.played(self.position, played)
        clean = self.cleaner.clean(frame.pcm, self.position)
        pcm = clean.pcm if clean.converged else frame.pcm
        self.heard.append(np.frombuffer(pcm, dtype="<i2"))
        if clean.converged and clean.echo_possible and not user.any():
            self.mic_power += float(np.sum(np.frombuffer(frame.pcm, "<i2").astype(float) ** 2))
            self.clean_power += float(np.sum(np.frombuffer(clean.pcm, "<i2").astype(float) ** 2))
        speech = counts_as_speech(self.vad.is_speech(pcm), clean, over_reply=True)
        barge = self.over_reply.hear(AudioFrame(pcm, self.position), speech)
        if barge:
            self.over_reply.reset()
        woke = self.wake.process(pcm) if self.wake is not None else False
        self.position += FRAME_SAMPLES
        return barge, woke

    def run(self, user: np.ndarray, played: np.ndarray) -> tuple[list[int], int]:
        """Frames where a barge-in was decided, and wake words heard, over the span."""
        barges, wakes = [], 0
        for at in range(0, played.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            barge, woke = self.step(user[at : at + FRAME_SAMPLES], played[at : at + FRAME_SAMPLES])
            if barge:
                barges.append(at)
            wakes += woke
        return barges, wakes


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * PIPELINE_RATE_HZ), dtype=np.int16)


def bench_room(
    engines: Engines, room: str, replies: int, interruptions: int, min_speech_ms: int
) -> RoomFigures:
    assert engines.tts is not None and engines.asr is not None
    tts, asr = engines.tts, engines.asr
    said = [np.frombuffer(speak_16k(tts, text), "<i2") for text in REPLIES]
    commands = [np.frombuffer(speak_16k(tts, text), "<i2") for text in COMMANDS]
    model = MicPathModel(room, engines.wake, min_speech_ms)
    began = model.cleaner.process_s
    converged_at: float | None = None
    self_cuts = false_wakes = 0
    for index in range(replies):
        reply = np.concatenate([said[index % len(said)], _silence(GAP_S)])
        cuts, wakes = model.run(np.zeros_like(reply), reply)
        self_cuts += len(cuts)
        false_wakes += wakes
        if converged_at is None and model.cleaner.converged:
            converged_at = model.position / PIPELINE_RATE_HZ
    erle = 10 * np.log10(model.mic_power / max(model.clean_power, 1.0))
    reactions: list[float] = []
    missed = 0
    over_refs, over_hyps, quiet_hyps = [], [], []
    for index in range(interruptions):
        reply = np.concatenate([said[(index + 3) % len(said)]] * 2 + [_silence(GAP_S)])
        command = commands[index % len(commands)]
        user = np.zeros_like(reply)
        onset = int(USER_AT_S * PIPELINE_RATE_HZ)
        user[onset : onset + command.size] = command[: reply.size - onset]
        start = len(model.heard)
        cuts, _ = model.run(user, reply)
        first_speech = onset + int(np.argmax(np.abs(command) > 300))
        cut = next((c for c in cuts if c >= first_speech), None)
        if cut is None or cut - first_speech > MISS_AFTER_S * PIPELINE_RATE_HZ:
            missed += 1
        else:
            # The sink stops at the tick after the frame that decided it.
            reactions.append((cut + 2 * FRAME_SAMPLES - first_speech) * 1000 / PIPELINE_RATE_HZ)
        heard = np.concatenate(model.heard[start:])
        segment = heard[max(0, onset - 4800) : onset + command.size + 4800]
        quiet = RoomSimulator(load_room(room))
        alone = np.concatenate([
            np.frombuffer(quiet.mix(AudioFrame(command[i : i + FRAME_SAMPLES].tobytes(), i)).pcm,
                          "<i2")
            for i in range(0, command.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)
        ])  # fmt: skip
        over_refs.append(COMMANDS[index % len(COMMANDS)])
        over_hyps.append(asr.transcribe(segment.astype("<i2").tobytes()).text)
        quiet_hyps.append(asr.transcribe(alone.astype("<i2").tobytes()).text)
    audio_s = model.position / PIPELINE_RATE_HZ
    return RoomFigures(
        room=room, replies=replies, self_interruptions=self_cuts,
        false_wakes_during_playback=false_wakes, erle_db=round(float(erle), 1),
        converged_after_s=converged_at, delay_ms=model.cleaner.delay_ms,
        interruptions=interruptions, missed=missed, reaction_ms=reactions,
        wer_over_reply=round(_wer(over_refs, over_hyps), 3),
        wer_in_quiet=round(_wer(over_refs, quiet_hyps), 3),
        canceller_cpu_per_audio_s=round((model.cleaner.process_s - began) / audio_s, 4),
    )  # fmt: skip


def _wer(refs: list[str], hyps: list[str]) -> float:
    if not refs:
        return 0.0
    return float(
        jiwer.wer([normalize(r) or "-" for r in refs], [normalize(h) or "-" for h in hyps])
    )


def format_room_table(figures: list[RoomFigures]) -> str:
    head = (
        "room     delay_ms  ERLE_dB  self-cuts/replies  false-wakes  barge-in median/p95 ms"
        "  missed  WER over-reply/quiet  AEC CPU"
    )
    lines = [head]
    for f in figures:
        s = f.summary()
        median = s["reaction_median_ms"]
        p95 = s["reaction_p95_ms"]
        reaction = "-" if median is None else f"{median:.0f}/{p95:.0f}"
        delay = "-" if f.delay_ms is None else f"{f.delay_ms:.0f}"
        cuts = f"{f.self_interruptions}/{f.replies}"
        missed = f"{f.missed}/{f.interruptions}"
        wer = f"{f.wer_over_reply:.2f}/{f.wer_in_quiet:.2f}"
        wakes = f.false_wakes_during_playback
        lines.append(
            f"{f.room:<8} {delay:>8} {f.erle_db:>8.1f} {cuts:>18} {wakes:>12}"
            f" {reaction:>23} {missed:>7} {wer:>20} {f.canceller_cpu_per_audio_s:>8.2%}"
        )
    return "\n".join(lines)


def noise_suppression_wer(engines: Engines, room: str | None) -> tuple[float, float]:
    """Whisper's WER on the benchmark corpus heard in ``room`` (its noise, no reply
    playing; None: the clean files), without and with WebRTC's noise suppressor."""
    from voiced.bench.corpus import synthesize_corpus

    assert engines.tts is not None and engines.asr is not None
    refs, plain, suppressed = [], [], []
    for utt in synthesize_corpus(engines.tts):
        simulator = RoomSimulator(load_room(room)) if room is not None else None
        processor = make_processor(echo_cancel=False, noise_suppression=True)
        samples = np.frombuffer(utt.pcm, "<i2")
        mic, cleaned = [], []
        for at in range(0, samples.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            frame = AudioFrame(samples[at : at + FRAME_SAMPLES].tobytes(), at)
            heard = simulator.mix(frame) if simulator is not None else frame
            block = np.frombuffer(heard.pcm, "<i2")
            mic.append(block)
            cleaned.append(processor.process(block))
        refs.append(utt.text)
        plain.append(engines.asr.transcribe(np.concatenate(mic).tobytes()).text)
        suppressed.append(engines.asr.transcribe(np.concatenate(cleaned).tobytes()).text)
    return _wer(refs, plain), _wer(refs, suppressed)


def run_room_bench(
    settings: Settings, models_dir: Path, rooms: list[str], *, replies: int = 50,
    interruptions: int = 20, json_path: Path | None = None,
) -> list[RoomFigures]:  # fmt: skip
    engines = load_engines(settings, models_dir, {Role.ASR, Role.TTS, Role.WAKE})
    figures = []
    for room in rooms:
        began = time.monotonic()
        figures.append(bench_room(engines, room, replies, interruptions,
                                  settings.listen.barge_in_min_speech_ms))  # fmt: skip
        print(f"  {room}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print(format_room_table(figures))
    print("\nnoise suppressor, Whisper WER on the 22-prompt corpus (no reply playing):")
    noisy: list[str | None] = [r for r in rooms if load_room(r).noise_dbfs is not None]
    for where in [None, *noisy]:
        plain, suppressed = noise_suppression_wer(engines, where)
        print(f"  {where or 'clean':<8} without {plain:.3f}  with {suppressed:.3f}", flush=True)
    if json_path is not None:
        import json

        json_path.write_text(json.dumps([f.summary() for f in figures], indent=2) + "\n")
    return figures


ALL_ROOMS = tuple(ROOMS)
