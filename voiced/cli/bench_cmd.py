"""`voiced bench`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from voiced.cli.common import add_settings_options, settings_and_models_dir
from voiced.errors import UsageError, VoicedError


def register(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure response latency against a baseline")
    add_settings_options(bench)
    bench.add_argument("--corpus", type=Path, metavar="DIR",
                       help="WAVs + manifest.jsonl (default: synthesise 22 prompts)")  # fmt: skip
    bench.add_argument("--limit", type=int, metavar="N", help="only the first N utterances")
    bench.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    bench.add_argument("--plot", type=Path, metavar="FILE", help="write a waterfall PNG")
    bench.add_argument("--save-corpus", type=Path, metavar="DIR",
                       help="save the synthesised corpus to rerun on the same audio")  # fmt: skip
    bench.add_argument("--no-baseline", action="store_true", help="skip the sequential baseline")
    bench.add_argument(
        "--qa", nargs="?", const="builtin", metavar="FILE",
        help="measure answer quality instead: ask a question set (JSONL; default: the "
        "built-in 62 questions) through the real responder",
    )  # fmt: skip
    bench.add_argument(
        "--session", action="store_true",
        help="with --qa: ask everything in one conversation (default: each question alone)",
    )  # fmt: skip
    bench.add_argument(
        "--wake", action="store_true",
        help="measure the wake word instead: detection, false wakes, CPU and delay per "
        "engine and model over synthesised voices (see --wake-cache)",
    )  # fmt: skip
    bench.add_argument("--wake-cache", type=Path, metavar="DIR",
                       help="with --wake: where the spoken sets are kept (made once)")  # fmt: skip
    bench.add_argument("--wake-room", metavar="NAME|IR.wav",
                       help="with --wake: the simulated room each wake word's set is also "
                       "heard across (default living)")  # fmt: skip
    bench.add_argument(
        "--room", nargs="?", const="all", metavar="NAME[,NAME...]|IR.wav",
        help="measure echo cancellation and interrupting by voice instead, per simulated "
        "room (default: every preset): ERLE, self-interruptions, barge-in reaction, "
        "double talk, false wakes, CPU",
    )  # fmt: skip
    bench.add_argument("--replies", type=int, metavar="N", default=50,
                       help="with --room: replies per room (default 50)")  # fmt: skip
    bench.add_argument(
        "--no-process", action="store_true",
        help="skip the start/idle/memory probes of a `voiced run` process",
    )  # fmt: skip
    bench.set_defaults(func=cmd_bench)


def _require_the_bench_extra() -> None:
    """The benchmarks score what Whisper heard with jiwer, an optional dependency."""
    try:
        import jiwer  # noqa: F401
    except ImportError:
        raise VoicedError(
            "voiced bench scores speech recognition with jiwer, which is not installed",
            fix="pip install 'voiced[bench]' (or pip install 'jiwer>=3.0') into voiced's venv",
        ) from None


def cmd_bench(args: argparse.Namespace) -> int:

    if args.limit is not None and not 1 <= args.limit <= 10_000:
        raise UsageError("--limit must be between 1 and 10000")
    if args.wake and args.qa is not None:
        raise UsageError("--wake and --qa are two benchmarks: pick one")
    if args.wake_cache is not None and not args.wake:
        raise UsageError("--wake-cache goes with --wake")
    if args.wake_room is not None and not args.wake:
        raise UsageError("--wake-room goes with --wake")
    if args.session and args.qa is None:
        raise UsageError("--session goes with --qa")
    if sum([args.wake, args.qa is not None, args.room is not None]) > 1:
        raise UsageError("--wake, --qa and --room are separate benchmarks: pick one")
    if not 1 <= args.replies <= 1000:
        raise UsageError("--replies must be between 1 and 1000")
    rooms = _rooms(args.room) if args.room is not None else None
    _require_the_bench_extra()
    settings, models_dir = settings_and_models_dir(args)
    if rooms is not None:
        from voiced.bench.echo import run_room_bench

        run_room_bench(settings, models_dir, rooms, replies=args.replies, json_path=args.json)
        return 0
    if args.qa is not None:
        from voiced.bench.qa import run_qa_bench

        questions = None if args.qa == "builtin" else Path(args.qa)
        run_qa_bench(settings, models_dir, questions, session=args.session, json_path=args.json)
        return 0
    if args.wake:
        from voiced.bench.wake import run_wake_bench_cli

        run_wake_bench_cli(settings, models_dir, args.wake_cache, args.json, args.wake_room)
        return 0
    from voiced.bench.run import BenchOptions, run_bench

    run_bench(BenchOptions(
        settings=settings, models_dir=models_dir, config=args.config, corpus=args.corpus,
        limit=args.limit, baseline=not args.no_baseline, process=not args.no_process,
        json_path=args.json, plot_path=args.plot, save_corpus=args.save_corpus,
    ))  # fmt: skip
    return 0


def _rooms(spec: str) -> list[str]:
    """Preset names (comma-separated, or ``all``) or one impulse-response WAV, checked."""
    from voiced.audio.room import ROOMS, load_room

    names = list(ROOMS) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("--room wants a room name, a list of them, or an .wav file")
    for name in names:
        load_room(name)  # an unknown name or a bad file is told now
    return names
