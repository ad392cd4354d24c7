"""`voiced models list|prepare|verify`."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any, Protocol

from voiced.cli.common import add_settings_options, settings_and_models_dir
from voiced.errors import ModelError, UsageError
from voiced.models.manifest import ModelSpec, Role, load_manifest
from voiced.models.prepare import prepare_models
from voiced.models.store import check_model, resolve_cache_dir, resolve_models_dir
from voiced.models.tiers import models_for, resolve_slm_model
from voiced.settings import Settings


class CommandModule(Protocol):
    def register(self, commands: Any) -> None: ...


def register(commands: Any) -> None:
    models = commands.add_parser("models", help="list, prepare and verify models")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="show the models the manifest knows")
    _add_models_dir(listing)
    listing.set_defaults(func=cmd_list)

    prepare = sub.add_parser("prepare", help="fetch, check and convert models (offline-safe)")
    prepare.add_argument(
        "names", nargs="*", help="models to prepare (default: the ones the config needs)"
    )
    prepare.add_argument("--all", action="store_true", help="every model that can be prepared")
    prepare.add_argument("--force", action="store_true", help="rebuild even when intact")
    add_settings_options(prepare)
    prepare.set_defaults(func=cmd_prepare)

    verify = sub.add_parser("verify", help="re-hash prepared models against their stamps")
    verify.add_argument(
        "names", nargs="*", help="models to verify (default: the ones the config needs)"
    )
    add_settings_options(verify)
    verify.set_defaults(func=cmd_verify)


def _add_models_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir", metavar="DIR",
        help="models directory (default: $VOICED_MODELS_DIR, else the user data dir)",
    )  # fmt: skip


def _selected(args: argparse.Namespace, settings: Settings) -> list[ModelSpec]:
    manifest = load_manifest()
    if getattr(args, "all", False):
        if args.names:
            raise UsageError("give model names or --all, not both")
        return [m for m in manifest.models if not m.unavailable]
    if args.names:
        return [manifest.get(name) for name in dict.fromkeys(args.names)]
    return models_for(settings, manifest)


def _sources(spec: ModelSpec) -> str:
    sources = sorted({f.requirement for f in spec.files}, key=_natural)
    if len(sources) > 2:  # a model split over many wheels: first and last part
        return f"{sources[0]} .. {sources[-1]} ({len(sources)} wheels)"
    return ", ".join(sources)


def _natural(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def cmd_list(args: argparse.Namespace) -> int:
    models_dir = resolve_models_dir(args.models_dir)
    manifest = load_manifest()
    auto = resolve_slm_model("auto", manifest=manifest)
    width = max(len(m.name) for m in manifest.models) + 2
    print(f"models directory: {models_dir}")
    print(f"{'name':<{width}}{'role':<6}{'default':<14}{'state':<14}source")
    for spec in manifest.models:
        if spec.unavailable:
            state = "unavailable"
        else:
            state = "prepared" if check_model(models_dir, spec, full=False).ok else "not prepared"
        if spec.role is Role.SLM:
            default = f"{spec.tier or ''}{', auto' if spec.name == auto else ''}"
        else:
            default = "yes" if spec.default else ""
        print(
            f"{spec.name:<{width}}{spec.role.value:<6}{default:<14}{state:<14}"
            f"{_sources(spec)} [{spec.licence}]"
        )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    settings, models_dir = settings_and_models_dir(args)
    specs = _selected(args, settings)
    started = time.monotonic()
    results = prepare_models(models_dir, specs, resolve_cache_dir(), force=args.force)
    elapsed_s = time.monotonic() - started
    total_mb = sum(r.size_bytes for r in results) / 1e6
    if any(r.changed for r in results):
        print(f"prepared into {models_dir} in {elapsed_s:.1f} s ({total_mb:.0f} MB on disk)")
    else:
        print(f"all {len(results)} models already prepared in {models_dir}; nothing to do")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    settings, models_dir = settings_and_models_dir(args)
    specs = _selected(args, settings)
    if not models_dir.is_dir():
        raise ModelError(
            f"the models directory {models_dir} does not exist",
            fix=f"run `voiced models prepare --models-dir {models_dir}`",
        )
    failed: list[str] = []
    for spec in specs:
        check = check_model(models_dir, spec, full=True)
        print(f"{'ok  ' if check.ok else 'FAIL'} {spec.name}: {check.detail}")
        if not check.ok:
            failed.append(spec.name)
    if failed:
        raise ModelError(
            f"{len(failed)} model(s) failed verification in {models_dir}: {', '.join(failed)}",
            fix=f"run `voiced models prepare {' '.join(failed)} --models-dir {models_dir}`",
        )
    return 0
