"""Prometheus metrics, written by hand in the text exposition format.

Why not prometheus-client: a dozen series need ~100 lines, no extra dependency
on a small device, and no process-global registry (tests start many servers in
one process; the client library's default registry would collide).

Stage durations come from each finished turn's TurnRecord (stream-clock ms):

    utterance        speech_start -> speech_end (how long the user spoke)
    asr              speech_end   -> asr_done
    first_token      asr_done     -> first_token (intent or language model)
    first_chunk      asr_done     -> first_chunk (first speakable clause)
    tts_first_chunk  first_chunk  -> first_audio (synthesis of the first clause)
    speaking         first_audio  -> done

and the response latency the user feels is speech_end -> first_audio.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.turn import TurnRecord

BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES: dict[str, tuple[str, str]] = {
    "utterance": ("speech_start_ms", "speech_end_ms"),
    "asr": ("speech_end_ms", "asr_done_ms"),
    "first_token": ("asr_done_ms", "first_token_ms"),
    "first_chunk": ("asr_done_ms", "first_chunk_ms"),
    "tts_first_chunk": ("first_chunk_ms", "first_audio_ms"),
    "speaking": ("first_audio_ms", "done_ms"),
}
RESPONSE = ("speech_end_ms", "first_audio_ms")


def _span_ms(turn: TurnRecord, fields: tuple[str, str]) -> float | None:
    start, end = (getattr(turn, name) for name in fields)
    if start is None or end is None or end < start:
        return None
    return float(end - start)


def stage_times_ms(turn: TurnRecord) -> dict[str, float]:
    """Stage -> duration in ms, for the stages this turn reached."""
    spans = {stage: _span_ms(turn, fields) for stage, fields in STAGES.items()}
    return {stage: round(ms, 1) for stage, ms in spans.items() if ms is not None}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        prefix = labels + "," if labels else ""
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{prefix}le="{_number(bound)}"}} {running}')
        out.append(f'{name}_bucket{{{prefix}le="+Inf"}} {self.total}')
        tail = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{tail} {self.sum!r}", f"{name}_count{tail} {self.total}"]
        return out


class Metrics:
    """Counters fed by the bus and by finished turns; ``render()`` for /metrics.

    Counts kept elsewhere are read through callables set by the daemon:
    ``xruns`` (the sound card source) and ``mqtt_reconnects`` (the bridge).
    """

    def __init__(self) -> None:
        self.stages = {stage: Histogram() for stage in STAGES}
        self.response = Histogram()
        self.wake_detections = 0
        self.wakes_during_reply = 0
        self.words_heard: Counter[str] = Counter()
        self.mic_reconnects = 0
        self.speaker_lost = 0
        self.turns: Counter[str] = Counter()
        self.xruns: Callable[[], int] = lambda: 0
        self.mqtt_reconnects: Callable[[], int] = lambda: 0
        self.loop_lag_s: float | None = None

    def attach(self, bus: EventBus, on_turn_done: list[Callable[[TurnRecord], None]]) -> None:
        bus.add_listener(self.on_event)
        on_turn_done.append(self.on_turn)

    def on_event(self, event: Event) -> None:
        if event.type is EventType.WAKE_WORD_END:
            self.wake_detections += 1
        elif event.type is EventType.BARGE_IN and event.data.get("reason") == "wake word":
            # Counted apart: during a reply the wake word may be the assistant's own voice.
            self.wakes_during_reply += 1
        elif event.type is EventType.WORD_HEARD:
            self.words_heard[str(event.data.get("action", ""))] += 1
        elif event.type is EventType.MIC_RESTORED:
            self.mic_reconnects += 1
        elif event.type is EventType.SPEAKER_LOST:
            self.speaker_lost += 1

    def on_turn(self, turn: TurnRecord) -> None:
        self.turns[turn.outcome] += 1
        for stage, fields in STAGES.items():
            span = _span_ms(turn, fields)
            if span is not None:
                self.stages[stage].observe(span / 1000.0)
        span = _span_ms(turn, RESPONSE)
        if span is not None:
            self.response.observe(span / 1000.0)

    def render(self) -> str:
        out: list[str] = []

        def header(name: str, kind: str, text: str) -> None:
            out.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

        name = "voiced_stage_duration_seconds"
        header(name, "histogram", "Duration of each pipeline stage of a turn.")
        for stage, histogram in self.stages.items():
            out += histogram.lines(name, f'stage="{stage}"')
        name = "voiced_response_latency_seconds"
        header(name, "histogram", "End of speech to the first reply audio.")
        out += self.response.lines(name)
        header("voiced_turns_total", "counter", "Finished turns by outcome.")
        for outcome, count in sorted(self.turns.items()):
            out.append(f'voiced_turns_total{{outcome="{_escape(outcome)}"}} {count}')
        header("voiced_words_heard_total", "counter", "[[wake.words]] heard, by action.")
        for action, count in sorted(self.words_heard.items()):
            out.append(f'voiced_words_heard_total{{action="{_escape(action)}"}} {count}')
        for name, text, value in (
            ("voiced_wake_detections_total", "Wake word detections.", self.wake_detections),
            ("voiced_wake_during_reply_total",
             "Wake word heard while a reply played (it barged in; may be its own voice).",
             self.wakes_during_reply),
            ("voiced_xruns_total", "Audio blocks lost to overruns.", self.xruns()),
            ("voiced_mic_reconnects_total", "Microphone reopened.", self.mic_reconnects),
            ("voiced_speaker_lost_total", "Replies that did not play out.", self.speaker_lost),
            ("voiced_mqtt_reconnects_total", "MQTT connection recovered.", self.mqtt_reconnects()),
        ):
            header(name, "counter", text)
            out.append(f"{name} {value}")
        if self.loop_lag_s is not None:
            name = "voiced_event_loop_lag_seconds"
            header(name, "gauge", "How late the event loop ran a 0.5 s timer, last sample.")
            out.append(f"{name} {self.loop_lag_s!r}")
        return "\n".join(out) + "\n"
