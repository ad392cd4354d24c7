"""The benchmark corpus: 16 kHz mono WAVs plus manifest.jsonl, or a default one
synthesised with the installed voice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from voiced.audio.wavfile import read_wav_as_pipeline_pcm
from voiced.engines.tts import PiperTts
from voiced.errors import UsageError
from voiced.speech_synth import speak_16k, write_wav

MAX_MANIFEST_LINES = 10_000

DEFAULT_PROMPTS: list[tuple[str, str]] = [
    ("What time is it?", "command"),
    ("What is the capital of France?", "question"),
    ("Set a timer for twenty minutes.", "command"),
    ("Why is the sky blue?", "question"),
    ("What day is it today?", "command"),
    ("How many legs does a spider have?", "question"),
    ("Turn it up.", "command"),
    ("Who wrote Romeo and Juliet?", "question"),
    ("Cancel the timer.", "command"),
    ("What is the largest planet in our solar system?", "question"),
    ("Turn it down.", "command"),
    ("How far away is the moon?", "question"),
    ("Set a timer for an hour.", "command"),
    ("Give me a fun fact about octopuses.", "question"),
    ("What is the time?", "command"),
    ("What should I cook for dinner tonight?", "question"),
    ("Volume up.", "command"),
    ("Tell me a joke about computers.", "question"),
    ("What language is spoken in Brazil?", "question"),
    ("What is the boiling point of water?", "question"),
    ("How do plants make their food?", "question"),
    ("Quieter please.", "command"),
]


@dataclass(frozen=True, slots=True)
class Utterance:
    name: str
    text: str
    """The reference transcript."""
    kind: str
    """command (expected to be a local intent) or question."""
    pcm: bytes
    """16 kHz mono int16."""


def load_corpus(directory: Path) -> list[Utterance]:
    manifest = directory / "manifest.jsonl"
    if not manifest.is_file():
        raise UsageError(f"{manifest} does not exist",
                         fix="a corpus is a folder of WAVs with manifest.jsonl")  # fmt: skip
    utterances: list[Utterance] = []
    lines = manifest.read_text(encoding="utf-8").splitlines()[:MAX_MANIFEST_LINES]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio, text, kind = str(entry["audio"]), str(entry["text"]), str(entry["kind"])
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{manifest}, line {number}: {err!r}",
                             fix='each line: {"audio": "x.wav", "text": "...", '
                             '"kind": "command"|"question"}') from err  # fmt: skip
        if kind not in ("command", "question"):
            raise UsageError(f"{manifest}, line {number}: kind must be command or question")
        path = (directory / audio).resolve()
        if directory.resolve() not in path.parents:
            raise UsageError(f"{manifest}, line {number}: {audio} is outside the corpus folder")
        utterances.append(Utterance(Path(audio).stem, text, kind, read_wav_as_pipeline_pcm(path)))
    if not utterances:
        raise UsageError(f"{manifest} lists no utterances")
    return utterances


def synthesize_corpus(tts: PiperTts, limit: int | None = None) -> list[Utterance]:
    prompts = DEFAULT_PROMPTS[:limit] if limit else DEFAULT_PROMPTS
    return [
        Utterance(f"u{index:02d}", text, kind, speak_16k(tts, text))
        for index, (text, kind) in enumerate(prompts, start=1)
    ]


def save_corpus(utterances: list[Utterance], directory: Path) -> None:
    """Write a corpus folder (so a run can be repeated on exactly the same audio)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for utt in utterances:
        write_wav(directory / f"{utt.name}.wav", utt.pcm)
        lines.append(json.dumps({"audio": f"{utt.name}.wav", "text": utt.text, "kind": utt.kind}))
    (directory / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
