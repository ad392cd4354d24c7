"""Options shared by the commands that load settings and models."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from voiced.models.store import resolve_models_dir
from voiced.service.profiles import resolve_profile, settings_overrides
from voiced.settings import Settings, load_settings, read_profile_key

T = TypeVar("T")


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML config file")
    parser.add_argument(
        "--profile", metavar="NAME|FILE",
        help="hardware profile (rpi4, rpi5, jetson-orin-nano, generic-x86, a .toml, or "
        "'none'; default: config `profile`, else detected from the board)",
    )  # fmt: skip
    parser.add_argument(
        "--models-dir", metavar="DIR",
        help="models directory (default: config models_dir, $VOICED_MODELS_DIR, user data dir)",
    )  # fmt: skip


def settings_and_models_dir(args: argparse.Namespace) -> tuple[Settings, Path]:
    requested = getattr(args, "profile", None) or read_profile_key(args.config)
    profile = resolve_profile(requested)
    base = settings_overrides(profile) if profile else None
    if profile is not None:
        logging.getLogger(__name__).info("hardware profile: %s", profile.name)
    settings = load_settings(args.config, base)
    return settings, resolve_models_dir(args.models_dir or settings.models_dir)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
