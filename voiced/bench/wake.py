"""`voiced bench --wake`: detection, false wakes, CPU and delay per wake engine and model.

The spoken sets (voiced.bench.wake_sets) are fed as fast as the CPU allows, in the
30 ms pieces the daemon hands its wake word while idle: detection and false wakes
do not depend on pacing, and CPU is measured as CPU seconds of the scoring thread
per second of audio, so other load on the machine does not count.
"""

from __future__ import annotations

import bisect
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ
from voiced.audio.room import Room, load_room
from voiced.bench.wake_sets import GAP_S, SpokenSet, in_room, load_or_build
from voiced.engines.wake import WakeWordDetector
from voiced.engines.wake_names import MANIFEST_MODEL, MICRO_WAKE_WORDS, OPEN_WAKE_WORDS
from voiced.engines.wake_open import OpenWakeWordDetector
from voiced.engines.wake_set import Detector
from voiced.models.manifest import Role, load_manifest
from voiced.models.store import require_model_dir, resolve_cache_dir
from voiced.settings import Settings

CHUNK_BYTES = 3 * FRAME_SAMPLES * 2
"""30 ms: what the daemon batches for the wake word while idle."""
DEFAULT_ROOM = "living"
"""The simulated room each wake word's set is also heard across (voiced.audio.room):
600 ms of reverberation and a -50 dBFS noise floor."""
ASSISTANT_VOICE = "piper x1.0"
"""The assistant's own voice: false wakes in it are counted apart (the assistant
hearing itself), though the daemon does not score the wake word while it speaks
unless barge-in is on."""


@dataclass(slots=True)
class Run:
    """What one detector did on one set."""

    detections_ms: list[float]
    cpu_s: float
    audio_s: float


@dataclass(slots=True)
class Row:
    engine: str
    model: str
    turns: int = 0
    detected: int = 0
    by_group: dict[str, list[int]] = field(default_factory=dict)
    """espeak, piper, noisy -> [detected, turns]."""
    false_speech: int = 0
    false_own_voice: int = 0
    false_music: int = 0
    false_in_wake_set: int = 0
    """Detections in the wake word's own set outside any turn (a second wake, say)."""
    speech_hours: float = 0.0
    music_hours: float = 0.0
    cpu_percent: float = 0.0
    """Of one core (every thread of the process), listening to the wake word's set:
    the cost of one wake word alone."""
    delay_ms: list[float] = field(default_factory=list)
    """From the end of the wake word's last sound to the detection."""

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("delay_ms")
        delays = sorted(self.delay_ms)
        data["delay_median_ms"] = round(statistics.median(delays)) if delays else None
        data["delay_p95_ms"] = round(delays[int(0.95 * (len(delays) - 1))]) if delays else None
        hours = self.speech_hours + self.music_hours
        data["false_per_hour"] = round((self.false_speech + self.false_music) / hours, 2)
        return data


def run_detector(detector: Detector, spoken: SpokenSet) -> dict[str, Run]:
    """Model name -> its detections (an openWakeWord detector with several models
    scores them all off one feature stream and says which fired)."""
    detector.reset()
    pcm = spoken.pcm
    names = [word.name for word in getattr(detector, "words", ())] or [detector.name]
    found: dict[str, list[float]] = {name: [] for name in names}
    started = time.process_time()
    for start in range(0, len(pcm) - CHUNK_BYTES + 1, CHUNK_BYTES):
        if detector.process(pcm[start : start + CHUNK_BYTES]):
            at_ms = (start + CHUNK_BYTES) / 2 / PIPELINE_RATE_HZ * 1000
            for word in getattr(detector, "fired", (detector.name,)):
                found[word].append(at_ms)
    cpu_s = time.process_time() - started
    return {word: Run(times, cpu_s, spoken.seconds) for word, times in found.items()}


def _hits(spoken: SpokenSet, run: Run) -> tuple[dict[int, float], int]:
    """Turn index -> delay of its detection, and the detections outside any turn."""
    starts = [turn.start_ms for turn in spoken.turns]
    hit: dict[int, float] = {}
    stray = 0
    for at in run.detections_ms:
        index = bisect.bisect_right(starts, at) - 1
        turn = spoken.turns[index] if index >= 0 else None
        if turn is None or at > turn.end_ms + GAP_S * 1000 or index in hit:
            stray += 1
        else:
            hit[index] = at - turn.wake_end_ms
    return hit, stray


def score_in_room(row: Row, spoken: SpokenSet, run: Run) -> None:
    """The wake word's set heard across a simulated room: its own column."""
    hit, _ = _hits(spoken, run)
    row.by_group["room"] = [len(hit), len(spoken.turns)]


def score_positive(row: Row, spoken: SpokenSet, run: Run) -> None:
    hit, stray = _hits(spoken, run)
    row.false_in_wake_set += stray
    row.turns += len(spoken.turns)
    row.detected += len(hit)
    row.cpu_percent = round(100 * run.cpu_s / run.audio_s, 2)
    row.delay_ms += list(hit.values())
    for index, turn in enumerate(spoken.turns):
        groups = [turn.voice.split()[0]] + (["noisy"] if turn.noisy else [])
        for group in groups:
            counts = row.by_group.setdefault(group, [0, 0])
            counts[0] += index in hit
            counts[1] += 1


def score_negative(row: Row, spoken: SpokenSet, run: Run) -> None:
    if spoken.name == "music":
        row.false_music += len(run.detections_ms)
        row.music_hours += run.audio_s / 3600
        return
    starts = [turn.start_ms for turn in spoken.turns]
    for at in run.detections_ms:
        index = max(0, bisect.bisect_right(starts, at) - 1)
        row.false_speech += 1
        row.false_own_voice += spoken.turns[index].voice == ASSISTANT_VOICE
    row.speech_hours += run.audio_s / 3600


def make_detectors(
    settings: Settings, models_dir: Path, words: dict[str, tuple[str, ...]]
) -> dict[tuple[str, ...], Detector]:
    """(engine, *models) -> a detector for those models."""
    manifest = load_manifest()
    micro_dir = require_model_dir(models_dir, manifest.get(MANIFEST_MODEL["micro"]))
    open_dir = require_model_dir(models_dir, manifest.get(MANIFEST_MODEL["open"]))
    wake = settings.wake
    detectors: dict[tuple[str, ...], Detector] = {}
    for word in words.get("micro", ()):
        detectors["micro", word] = WakeWordDetector(
            micro_dir / f"{word}.json",
            probability_cutoff=wake.probability_cutoff,
            refractory_ms=wake.refractory_ms,
        )
    for group in words.get("open", ()):
        names = group.split("+")
        detectors[("open", *names)] = OpenWakeWordDetector(
            [open_dir / f"{name}.tflite" for name in names],
            open_dir,
            threshold=wake.threshold,
            debounce_ms=wake.debounce_ms,
            refractory_ms=wake.refractory_ms,
        )
    return detectors


def both_row(micro: Row, open_: Row, runs: dict[str, tuple[Run, Run]], sets: dict[str, SpokenSet],
             refractory_ms: float) -> Row:  # fmt: skip
    """What engine `both` does: either engine's detection wakes, one refractory period
    across them (voiced.engines.wake_set.WakeSet), from the two engines' runs."""
    row = Row("both", micro.model)
    for name, (a, b) in runs.items():
        merged: list[float] = []
        for at in sorted(a.detections_ms + b.detections_ms):
            if not merged or at - merged[-1] >= refractory_ms:
                merged.append(at)
        run = Run(merged, a.cpu_s + b.cpu_s, a.audio_s)
        if name == micro.model:
            score_positive(row, sets[name], run)
        elif "@" in name:
            score_in_room(row, sets[name], run)
        else:
            score_negative(row, sets[name], run)
    return row


def wake_bench(
    settings: Settings, models_dir: Path, piper_path: Path, cache: Path,
    say: Callable[[str], None] = print, room: Room | None = None,
) -> list[Row]:  # fmt: skip
    """Every engine and built-in model over the sets, and each wake word's set heard
    across ``room`` too (None: load_room(DEFAULT_ROOM)); blocking (minutes)."""
    sets = {s.name: s for s in load_or_build(cache, piper_path, OPEN_WAKE_WORDS, say)}
    room = room or load_room(DEFAULT_ROOM)
    for seed, word in enumerate(OPEN_WAKE_WORDS):
        reverberant = in_room(sets[word], room, seed)
        sets[reverberant.name] = reverberant
    negatives = [sets["speech"], sets["music"]]
    speech_min = sets["speech"].seconds / 60
    say(f"sets: {sum(len(s.turns) for n, s in sets.items() if n in OPEN_WAKE_WORDS)} wake turns, "
        f"{speech_min:.1f} min of speech without a wake word, "
        f"{sets['music'].seconds / 60:.1f} min of music")  # fmt: skip
    rows: dict[tuple[str, str], Row] = {}
    runs: dict[tuple[str, str], dict[str, Run]] = {}
    singles = {"micro": MICRO_WAKE_WORDS, "open": OPEN_WAKE_WORDS}
    for (engine, word), detector in make_detectors(settings, models_dir, singles).items():
        say(f"scoring {engine} {word}")
        row = rows[engine, word] = Row(engine, word)
        positives = (sets[word], sets[f"{word}@{room.name}"])
        targets = (*positives, *negatives) if engine == "micro" else positives
        for spoken in targets:
            run = run_detector(detector, spoken)[word]
            runs.setdefault((engine, word), {})[spoken.name] = run
            if spoken.name == word:
                score_positive(row, spoken, run)
            elif "@" in spoken.name:
                score_in_room(row, spoken, run)
            else:
                score_negative(row, spoken, run)
    # openWakeWord's models share their features: all five listen to the long sets
    # at once (five times cheaper), each model's detections counted apart.
    together: dict[str, tuple[str, ...]] = {"open": ("+".join(OPEN_WAKE_WORDS),)}
    for detector in make_detectors(settings, models_dir, together).values():
        for spoken in negatives:
            say(f"scoring open (all models) on {spoken.name}")
            for word, run in run_detector(detector, spoken).items():
                runs["open", word][spoken.name] = run
                score_negative(rows["open", word], spoken, run)
    result = list(rows.values())
    for word in MICRO_WAKE_WORDS:
        pair = {
            name: (runs["micro", word][name], runs["open", word][name])
            for name in (word, f"{word}@{room.name}", "speech", "music")
        }
        result.append(both_row(rows["micro", word], rows["open", word], pair, sets,
                               settings.wake.refractory_ms))  # fmt: skip
    return result


def table(rows: list[Row], room: str = "") -> str:
    lines = [
        "| engine | model | detected | espeak voices | piper voices | in noise | "
        f"across a room ({room or DEFAULT_ROOM}) | "
        "false wakes (speech / own voice / music) | false per hour | CPU, % of a core | "
        "delay median / p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.model, r.engine)):
        s = row.summary()

        def share(group: str, r: Row = row) -> str:
            hit, total = r.by_group.get(group, [0, 0])
            return f"{hit}/{total}"

        lines.append(
            f"| {row.engine} | {row.model} | {row.detected}/{row.turns} | {share('espeak')} | "
            f"{share('piper')} | {share('noisy')} | {share('room')} | "
            f"{row.false_speech} / {row.false_own_voice} / "
            f"{row.false_music} | {s['false_per_hour']} | {row.cpu_percent} | "
            f"{s['delay_median_ms']} / {s['delay_p95_ms']} ms |"
        )
    return "\n".join(lines)


def run_wake_bench(
    settings: Settings, models_dir: Path, piper_path: Path, cache: Path, json_path: Path | None,
    room_spec: str = DEFAULT_ROOM,
) -> list[Row]:
    room = load_room(room_spec)
    rows = wake_bench(settings, models_dir, piper_path, cache, room=room)
    print(table(rows, room.name))
    if json_path is not None:
        json_path.write_text(json.dumps([r.summary() for r in rows], indent=2), encoding="utf-8")
    return rows


def run_wake_bench_cli(
    settings: Settings, models_dir: Path, cache: Path | None, json_path: Path | None,
    room_spec: str | None = None,
) -> None:
    from voiced.engines.loader import resolve_model_paths

    load_room(room_spec or DEFAULT_ROOM)  # a bad room is an error before the long work
    piper = resolve_model_paths(settings, models_dir, {Role.TTS}).tts
    run_wake_bench(settings, models_dir, piper, cache or resolve_cache_dir() / "wake-bench",
                   json_path, room_spec or DEFAULT_ROOM)  # fmt: skip
