"""Options shared by the commands that load settings and models."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from voiced.models.store import resolve_models_dir
from voiced.settings import Settings, load_settings

T = TypeVar("T")


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML config file")
    parser.add_argument(
        "--models-dir", metavar="DIR",
        help="models directory (default: config models_dir, $VOICED_MODELS_DIR, user data dir)",
    )  # fmt: skip


def settings_and_models_dir(args: argparse.Namespace) -> tuple[Settings, Path]:
    settings = load_settings(args.config)
    return settings, resolve_models_dir(args.models_dir or settings.models_dir)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
