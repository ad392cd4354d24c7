"""Options shared by the commands that load settings and models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from voiced.models.store import resolve_models_dir
from voiced.service.profiles import resolve_profile, settings_overrides
from voiced.settings import Settings, load_settings, read_profile_key

T = TypeVar("T")


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="TOML config file (default: $VOICED_CONFIG, else "
                        "~/.config/voiced/voiced.toml, else /etc/voiced/voiced.toml, "
                        "the first that exists)")  # fmt: skip
    parser.add_argument(
        "--profile", metavar="NAME|FILE",
        help="hardware profile (rpi4, rpi5, jetson-orin-nano, generic-x86, a .toml, or "
        "'none'; default: config `profile`, else detected from the board)",
    )  # fmt: skip
    parser.add_argument(
        "--models-dir", metavar="DIR",
        help="models directory (default: config models_dir, $VOICED_MODELS_DIR, user data dir)",
    )  # fmt: skip


SYSTEM_CONFIG = Path("/etc/voiced/voiced.toml")


def default_config_path(
    environ: Mapping[str, str] | None = None, system: Path = SYSTEM_CONFIG
) -> Path | None:
    """The config read without ``--config``: ``$VOICED_CONFIG`` (which must exist),
    else the user's (what ``voiced service install --user`` writes), else the
    system one (``voiced service install``); None: the defaults."""
    env = os.environ if environ is None else environ
    if env.get("VOICED_CONFIG"):
        return Path(env["VOICED_CONFIG"])
    home = env.get("XDG_CONFIG_HOME") or (env["HOME"] + "/.config" if env.get("HOME") else "")
    candidates = [Path(home) / "voiced/voiced.toml"] if home.startswith("/") else []
    for candidate in (*candidates, system):
        if candidate.is_file():
            return candidate
    return None


def config_path(args: argparse.Namespace) -> Path | None:
    """``--config``, else the default path; logged, so a user sees which file counts."""
    path: Path | None = getattr(args, "config", None)
    if path is None:
        path = default_config_path()
        if path is not None:
            logging.getLogger(__name__).info("config: %s", path)
    return path


def settings_and_models_dir(args: argparse.Namespace) -> tuple[Settings, Path]:
    args.config = config_path(args)
    requested = getattr(args, "profile", None) or read_profile_key(args.config)
    profile = resolve_profile(requested)
    base = settings_overrides(profile) if profile else None
    if profile is not None:
        logging.getLogger(__name__).info("hardware profile: %s", profile.name)
    settings = load_settings(args.config, base)
    return settings, resolve_models_dir(args.models_dir or settings.models_dir)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
