"""`voiced bench`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from voiced.cli.common import add_settings_options, settings_and_models_dir
from voiced.errors import UsageError


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
        "--no-process", action="store_true",
        help="skip the start/idle/memory probes of a `voiced run` process",
    )  # fmt: skip
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from voiced.bench.run import BenchOptions, run_bench

    if args.limit is not None and not 1 <= args.limit <= 10_000:
        raise UsageError("--limit must be between 1 and 10000")
    if args.session and args.qa is None:
        raise UsageError("--session goes with --qa")
    settings, models_dir = settings_and_models_dir(args)
    if args.qa is not None:
        from voiced.bench.qa import run_qa_bench

        questions = None if args.qa == "builtin" else Path(args.qa)
        run_qa_bench(settings, models_dir, questions, session=args.session, json_path=args.json)
        return 0
    run_bench(BenchOptions(
        settings=settings, models_dir=models_dir, config=args.config, corpus=args.corpus,
        limit=args.limit, baseline=not args.no_baseline, process=not args.no_process,
        json_path=args.json, plot_path=args.plot, save_corpus=args.save_corpus,
    ))  # fmt: skip
    return 0
