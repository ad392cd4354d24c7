"""`voiced demo`: the whole pipeline on any machine, sound card or not.

It speaks a question and a command with the installed voice, runs them through
the daemon in real time (wake word, VAD, Whisper, intents or the SLM, Piper),
writes the replies time-aligned to a WAV, plays it when a speaker exists, and
prints each turn with its latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from voiced.audio.devices import list_devices
from voiced.audio.wavfile import read_wav_as_pipeline_pcm
from voiced.daemon import RunOptions, load, needed_roles, run_daemon
from voiced.errors import AudioError
from voiced.settings import Settings
from voiced.speech_synth import compose, write_wav

_LOGGER = logging.getLogger(__name__)

DEMO_SCRIPT: list[str | float] = [
    0.5, "Hey Jarvis.", 0.4, "What is the capital of France?", 7.0,
    "Hey Jarvis.", 0.4, "What time is it?", 4.0,
]  # fmt: skip


async def run_demo(
    settings: Settings, models_dir: Path, output: Path, *, paced: bool = True
) -> list[dict[str, object]]:
    """Run the demo; ``paced=False`` reads the prompts as fast as the machine allows,
    each turn finished before the next is read (an emulator, a slow board), so the
    turns are the same but no latency is measured and the WAV holds the replies
    one after another."""
    engines = await load(settings, models_dir, needed_roles(settings, wake_mode=True))
    assert engines.tts is not None
    with tempfile.TemporaryDirectory(prefix="voiced-demo-") as tmp:
        prompt_wav, trace = Path(tmp, "prompts.wav"), Path(tmp, "trace.jsonl")
        write_wav(prompt_wav, compose(engines.tts, DEMO_SCRIPT))
        print(f"spoken prompts: {' '.join(p for p in DEMO_SCRIPT if isinstance(p, str))}")
        pace = "in real time" if paced else "unpaced, one turn at a time"
        print(f"running the pipeline {pace} (wake word 'hey jarvis') ...", flush=True)
        options = RunOptions(
            settings, models_dir, wake_mode=True, input=str(prompt_wav), output=str(output),
            realtime=paced, trace=trace,
        )  # fmt: skip
        await run_daemon(options, engines)
        lines = (await asyncio.to_thread(trace.read_text)).splitlines()
        turns = [json.loads(line) for line in lines if line]
    for number, turn in enumerate(turns, start=1):
        print(f"\nturn {number}: heard   {turn['transcript']!r}")
        print(f"        replied {turn['reply']!r}  (intent: {turn['intent'] or 'language model'})")
        latency = _latency(turn) if paced else "not measured (unpaced)"
        print(f"        end of speech -> first reply audio: {latency}")
    aligned = "time-aligned with the prompts" if paced else "one after another"
    print(f"\nreplies written to {output} ({aligned})")
    _play_if_possible(output)
    return turns


def _latency(turn: dict[str, object]) -> str:
    end, first = turn.get("speech_end_ms"), turn.get("first_audio_ms")
    if isinstance(end, float | int) and isinstance(first, float | int):
        return f"{first - end:.0f} ms"
    return f"no reply audio ({turn.get('outcome')})"


def _play_if_possible(path: Path) -> None:
    try:
        speakers = [d for d in list_devices() if d.max_output_channels > 0]
    except AudioError:
        speakers = []
    if not speakers:
        print("no speaker found: listen to the WAV file instead")
        return
    import sounddevice as sd

    print("playing the replies ...")
    sd.play(_as_array(path), 16_000, blocking=True)


def _as_array(path: Path):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.frombuffer(read_wav_as_pipeline_pcm(path), dtype="<i2")
