"""`voiced transcribe`, `voiced ask` and `voiced say`: one engine at a time, no daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from voiced.audio.sinks import open_sink
from voiced.audio.wavfile import read_wav_as_pipeline_pcm
from voiced.cli.common import add_settings_options, run_async, settings_and_models_dir
from voiced.daemon import load
from voiced.errors import UsageError
from voiced.models.manifest import Role
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import EventBus

MAX_TEXT_CHARS = 2000


def register(commands: Any) -> None:
    transcribe = commands.add_parser("transcribe", help="print the transcript of a WAV file")
    transcribe.add_argument("wav", type=Path)
    add_settings_options(transcribe)
    transcribe.set_defaults(func=cmd_transcribe)

    ask = commands.add_parser("ask", help="print the assistant's reply to a text")
    ask.add_argument("text")
    ask.add_argument("--speak", action="store_true", help="also say it on the speaker")
    ask.add_argument("--output", metavar="WAV", help="write the spoken reply to a WAV")
    add_settings_options(ask)
    ask.set_defaults(func=cmd_ask)

    say = commands.add_parser("say", help="speak a text with the installed voice")
    say.add_argument("text")
    say.add_argument("--output", metavar="WAV", help="write to a WAV instead of the speaker")
    add_settings_options(say)
    say.set_defaults(func=cmd_say)


def _text(value: str) -> str:
    text = value.strip()
    if not text:
        raise UsageError("the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"the text is longer than {MAX_TEXT_CHARS} characters")
    return text


def cmd_transcribe(args: argparse.Namespace) -> int:
    settings, models_dir = settings_and_models_dir(args)
    pcm = read_wav_as_pipeline_pcm(args.wav)
    engines = run_async(load(settings, models_dir, {Role.ASR}))
    assert engines.asr is not None
    print(engines.asr.transcribe(pcm).text)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    text = _text(args.text)
    speak = bool(args.speak or args.output)
    return run_async(_ask(args, text, speak))


async def _ask(args: argparse.Namespace, text: str, speak: bool) -> int:
    settings, models_dir = settings_and_models_dir(args)
    roles = {Role.ASR, Role.TTS, Role.SLM} if settings.slm.enabled else {Role.ASR, Role.TTS}
    engines = await load(settings, models_dir, roles)
    sink = open_sink(args.output if speak else "null", realtime=False)
    assistant = Assistant(settings, engines, sink, EventBus(), wake_mode=False)
    try:
        turn = await assistant.ask(text, speak=speak)
    finally:
        await assistant.close()
        sink.close()
    print(turn.reply)
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    text = _text(args.text)
    settings, models_dir = settings_and_models_dir(args)
    engines = run_async(load(settings, models_dir, {Role.TTS}))
    assert engines.tts is not None
    sink = open_sink(args.output, realtime=False)
    try:
        for pcm in engines.tts.synthesize(text):
            sink.enqueue(pcm, engines.tts.sample_rate_hz)
        run_async(asyncio.wait_for(sink.drained(), timeout=600))
    finally:
        sink.close()
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
