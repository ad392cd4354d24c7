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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiced",
        description="A local, streaming voice assistant daemon for edge hardware.",
    )
    parser.add_argument("--version", action="version", version=f"voiced {voiced.__version__}")
    parser.add_argument(
        "--log-level", default=os.environ.get("VOICED_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity (default INFO)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default=os.environ.get("VOICED_LOG_FORMAT", "text"),
        choices=["text", "json"], help="text for a terminal, json for log collectors",
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
