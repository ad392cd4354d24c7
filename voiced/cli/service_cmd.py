"""`voiced doctor`, `voiced service install` and `voiced config check`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voiced.errors import ConfigError
from voiced.models.store import resolve_models_dir

EXIT_CONFIG = ConfigError.exit_code


def register(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor", help="check this machine for what would stop voiced, with the fixes"
    )
    doctor.add_argument("--config", metavar="FILE", type=Path, help="TOML config file to check")
    doctor.add_argument(
        "--models-dir",
        metavar="DIR",
        help="models directory (default: config models_dir, $VOICED_MODELS_DIR, user data dir)",
    )
    doctor.set_defaults(func=cmd_doctor)

    service = commands.add_parser("service", help="install voiced as a systemd service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="install and start the systemd unit")
    install.add_argument(
        "--user",
        action="store_true",
        help="a user unit (PipeWire/PulseAudio desktops), not a system one",
    )
    install.add_argument("--dry-run", action="store_true", help="print the steps only")
    install.add_argument(
        "--profile", metavar="NAME", default=None, help="hardware profile (default: detected)"
    )
    install.set_defaults(func=cmd_service_install)
    reload = actions.add_parser(
        "reload", help="re-read the intents and hooks of the running service (SIGHUP)"
    )
    reload.add_argument("--user", action="store_true", help="the user unit")
    reload.set_defaults(func=cmd_service_reload)

    config = commands.add_parser("config", help="check a config file")
    config_actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_actions.add_parser("check", help="report every problem in a config file")
    check.add_argument("file", metavar="FILE", type=Path)
    check.set_defaults(func=cmd_config_check)


def cmd_doctor(args: argparse.Namespace) -> int:
    from voiced.cli.common import config_path, settings_and_models_dir
    from voiced.service.doctor import exit_code, format_findings, run_checks
    from voiced.settings import Settings

    args.config = config_path(args)
    settings: Settings | None = None
    # The settings the daemon would run with (profile included), so the devices
    # checked are the ones it opens. A bad config is reported by the config check
    # below, with the key and line.
    with contextlib.suppress(ConfigError):
        settings, _ = settings_and_models_dir(args)
    models_dir = resolve_models_dir(args.models_dir or (settings or Settings()).models_dir)
    findings = run_checks(settings, models_dir, config_path=args.config)
    print(format_findings(findings))
    return exit_code(findings)


def cmd_service_install(args: argparse.Namespace) -> int:
    from voiced.service.install import install

    install(args.user, dry_run=args.dry_run, profile=args.profile)
    return 0


def cmd_service_reload(args: argparse.Namespace) -> int:
    from voiced.service.install import InstallError, RunCommand

    systemctl = ("systemctl", "--user") if args.user else ("systemctl",)
    try:
        RunCommand((*systemctl, "reload", "voiced.service"))()
    except InstallError as err:
        raise InstallError(err.message, fix="is it running? systemctl status voiced") from err
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    problems = _config_checker()(args.file)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    print("ok")
    return 0


def _config_checker() -> Callable[[Path], list[str]]:
    """voiced.control.config_check.check_config, or the settings loader when it is absent."""
    try:
        module = importlib.import_module("voiced.control.config_check")
    except ImportError:
        return _load_only
    checker: Callable[[Path], list[str]] = module.check_config
    return checker


def _load_only(path: Path) -> list[str]:
    from voiced.settings import load_settings

    try:
        load_settings(path)
    except ConfigError as err:
        return [err.render()]
    return []
