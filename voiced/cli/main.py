"""The `voiced` command: argument parsing and the one place errors meet the user."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import voiced
from voiced.cli import bench_cmd, models_cmd, run_cmd, service_cmd, speech_cmd
from voiced.errors import VoicedError
from voiced.logs import setup_logging

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiced",
        description="A local, streaming voice assistant daemon for edge hardware.",
    )
    parser.add_argument("--version", action="version", version=f"voiced {voiced.__version__}")
    parser.add_argument(
        "--log-level", default=os.environ.get("VOICED_LOG_LEVEL", "INFO"), type=str.upper,
        choices=LOG_LEVELS, help="log verbosity (default INFO, or $VOICED_LOG_LEVEL)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default=os.environ.get("VOICED_LOG_FORMAT", "text"), type=str.lower,
        choices=LOG_FORMATS,
        help="text for a terminal, json for log collectors (or $VOICED_LOG_FORMAT)",
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(commands)
    return parser


def _command_modules() -> list[models_cmd.CommandModule]:
    return [models_cmd, run_cmd, speech_cmd, bench_cmd, service_cmd]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # argparse checks a default against the choices only when it came from the
    # command line: the environment's values are checked here.
    args.log_level, args.log_format = str(args.log_level).upper(), str(args.log_format).lower()
    for name, value, allowed in (("VOICED_LOG_LEVEL", args.log_level, LOG_LEVELS),
                                 ("VOICED_LOG_FORMAT", args.log_format, LOG_FORMATS)):  # fmt: skip
        if value not in allowed:
            parser.error(f"${name} is {value[:40]!r}; use one of {', '.join(allowed)}")
    setup_logging(args.log_level, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
        return result
    except VoicedError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        print(
            f"error[internal]: {type(err).__name__}: {err}\n"
            "  fix: this is a bug in voiced; rerun with --debug and report the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
