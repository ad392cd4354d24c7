"""voiced's Wyoming speech-to-text and text-to-speech side by side with
wyoming-faster-whisper and wyoming-piper, on the same models and the same audio,
measured by one client in one run (README, "Home Assistant").

    python scripts/bench_wyoming.py --peers-venv .cache/wyoming-peers \
        --models-dir .cache/test-models [--rounds 5] [--wyoming-bench]

The peers are installed in their own venv, never voiced's:

    python -m venv .cache/wyoming-peers
    .cache/wyoming-peers/bin/pip install wyoming-faster-whisper==3.8.1 \
        wyoming-piper==2.5.2 wyoming-bench==2026.10.0

Every server runs offline on the models in --models-dir (whisper-tiny.en, int8,
one CPU thread, beam 2 as voiced's trimmed window; Piper en_US-joe-medium).
Requests alternate between the servers so a load change on the machine hits
both. Figures: the median time from writing ``audio-stop`` to reading the
``transcript``, and from writing ``synthesize`` to reading the first
``audio-chunk``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe
from wyoming.tts import Synthesize

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from voiced.audio.format import PIPELINE_RATE_HZ  # noqa: E402
from voiced.engines.tts import PiperTts  # noqa: E402
from voiced.settings import TtsSettings  # noqa: E402
from voiced.speech_synth import compose, write_wav  # noqa: E402

COMMANDS = [
    "Turn on the kitchen light.",
    "Set a timer for ten minutes.",
    "What is the weather like tomorrow?",
    "Turn the volume down.",
    "Play some music in the living room.",
    "What time is it?",
    "Close the garage door.",
    "How long is left on my pizza timer?",
]
REPLIES = [
    "The light in room {n} is on.",
    "Timer set for {n} minutes.",
    "Tomorrow it will be {n} degrees, sunny and warm, with a light breeze in the afternoon.",
    "It is {n} minutes past seven. Your pizza timer has four minutes left.",
    "I closed garage door {n}. The front door is still unlocked.",
]
"""A number in each first clause makes every text new: voiced keeps short phrases
it has said in a cache, and this compares synthesis, not the cache."""
CHUNK_BYTES = 2048


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(port: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                if await asyncio.wait_for(client.read_event(), 5) is not None:
                    return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def time_transcript(port: int, pcm: bytes) -> tuple[float, str]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=PIPELINE_RATE_HZ, width=2, channels=1).event())
        for offset in range(0, len(pcm), CHUNK_BYTES):
            chunk = AudioChunk(
                rate=PIPELINE_RATE_HZ, width=2, channels=1, audio=pcm[offset : offset + CHUNK_BYTES]
            )
            await client.write_event(chunk.event())
        started = time.perf_counter()
        await client.write_event(AudioStop().event())
        while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
            if event.type == "transcript":
                return (time.perf_counter() - started) * 1000.0, str(event.data.get("text", ""))
    raise RuntimeError(f"no transcript from port {port}")


async def time_first_audio(port: int, text: str) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Synthesize(text=text).event())
        first_ms = None
        while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
            if event.type == "audio-chunk" and first_ms is None:
                first_ms = (time.perf_counter() - started) * 1000.0
            if event.type == "audio-stop":
                break
    if first_ms is None:
        raise RuntimeError(f"no audio from port {port}")
    return first_ms


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


async def measure(
    ports: dict[str, int], utterances: list[bytes], rounds: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for round_index in range(rounds + 1):  # round 0 warms every server up, untimed
        for pcm in utterances:
            for name in ("voiced", "wyoming-faster-whisper"):
                ms, text = await time_transcript(ports[name], pcm)
                if round_index:
                    times.setdefault(f"stt {name}", []).append(ms)
                if round_index == 1:
                    print(f"  {name:24} {ms:7.1f} ms  {text}")
        for index, reply in enumerate(REPLIES):
            text = reply.format(n=11 + round_index * len(REPLIES) + index)
            for name in ("voiced", "wyoming-piper"):
                ms = await time_first_audio(ports[name], text)
                if round_index:
                    times.setdefault(f"tts {name}", []).append(ms)
    return times


def report(times: dict[str, list[float]]) -> None:
    median = {key: statistics.median(values) for key, values in times.items()}
    print("\nmedian ms (n per row):")
    for key, value in median.items():
        print(f"  {key:30} {value:8.1f}  (n={len(times[key])})")
    stt = median["stt wyoming-faster-whisper"] / median["stt voiced"]
    tts = median["tts wyoming-piper"] / median["tts voiced"]
    print(f"\naudio-stop -> transcript: wyoming-faster-whisper / voiced = {stt:.2f}x")
    print(f"synthesize -> first audio: wyoming-piper / voiced = {tts:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers-venv", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--wyoming-bench",
        action="store_true",
        help="also run wyoming-bench stt and tts against all three",
    )
    args = parser.parse_args()
    peers_python = str(args.peers_venv / "bin" / "python")
    work = Path(tempfile.mkdtemp(prefix="voiced-bench-wyoming-"))
    voice_dir = work / "piper"
    voice_dir.mkdir()
    voice = args.models_dir / "piper-en_US-joe-medium" / "voice.onnx"
    (voice_dir / "en_US-joe-medium.onnx").symlink_to(voice)
    (voice_dir / "en_US-joe-medium.onnx.json").symlink_to(Path(f"{voice}.json"))
    ports = {name: free_port() for name in ("voiced", "wyoming-faster-whisper", "wyoming-piper")}
    servers = [
        start(
            [
                sys.executable,
                "-m",
                "voiced",
                "run",
                "--input",
                "null",
                "--output",
                "null",
                "--no-wake",
                "--models-dir",
                str(args.models_dir),
                "--wyoming",
                f"127.0.0.1:{ports['voiced']}",
            ],
            work / "voiced.log",
        ),
        start(
            [
                peers_python,
                "-m",
                "wyoming_faster_whisper",
                "--uri",
                f"tcp://127.0.0.1:{ports['wyoming-faster-whisper']}",
                "--model",
                str(args.models_dir / "whisper-tiny.en"),
                "--data-dir",
                str(work),
                "--local-files-only",
                "--language",
                "en",
                "--compute-type",
                "int8",
                "--cpu-threads",
                "1",
                "--beam-size",
                "2",
            ],
            work / "whisper.log",
        ),
        start(
            [
                peers_python,
                "-m",
                "wyoming_piper",
                "--uri",
                f"tcp://127.0.0.1:{ports['wyoming-piper']}",
                "--voice",
                "en_US-joe-medium",
                "--data-dir",
                str(voice_dir),
            ],
            work / "piper.log",
        ),
    ]
    try:
        for port in ports.values():
            asyncio.run(wait_ready(port))
        tts = PiperTts(voice, TtsSettings())
        utterances = [compose(tts, [0.2, text, 0.3]) for text in COMMANDS]
        del tts
        print(
            f"side by side, {args.rounds} rounds, {len(COMMANDS)} utterances, "
            f"{len(REPLIES)} replies; first round's transcripts:"
        )
        report(asyncio.run(measure(ports, utterances, args.rounds)))
        if args.wyoming_bench:
            corpus = work / "corpus"
            corpus.mkdir()
            for index, (text, pcm) in enumerate(zip(COMMANDS, utterances, strict=True)):
                write_wav(corpus / f"data_{index:02d}.wav", pcm)
                (corpus / f"data_{index:02d}.txt").write_text(text + "\n")
            bench = str(args.peers_venv / "bin" / "wyoming-bench")
            stt_servers = [f"127.0.0.1:{ports[n]}" for n in ("voiced", "wyoming-faster-whisper")]
            tts_servers = [f"127.0.0.1:{ports[n]}" for n in ("voiced", "wyoming-piper")]
            subprocess.run(
                [
                    bench,
                    "stt",
                    "--corpus",
                    str(corpus),
                    "--mode",
                    "non_streaming",
                    "--rounds",
                    str(args.rounds),
                    *stt_servers,
                ],
                check=False,
            )
            subprocess.run(
                [
                    bench,
                    "tts",
                    "--mode",
                    "non_streaming",
                    # Each text once: wyoming-bench makes a text unique at its end,
                    # and a repeated first clause would come from voiced's cache.
                    "--rounds",
                    "1",
                    "--warmup",
                    "0",
                    "--texts",
                    *(r.format(n=n) for n in range(200, 200 + args.rounds) for r in REPLIES),
                    "--",
                    *tts_servers,
                ],
                check=False,
            )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
