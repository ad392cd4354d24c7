"""Install voiced as a systemd service: a plan of steps, printed or applied.

``plan_install`` builds the steps without touching the system, so a dry run
prints exactly what ``apply`` would do. The unit files are the static files in
``systemd/`` (``voiced/_data/systemd`` in a wheel); only their ``ExecStart=``
path is rewritten to the venv being installed from.

System mode (appliances, raw ALSA, needs root)::

    /etc/systemd/system/voiced.service      (+ voiced.service.d/jetson.conf)
    /etc/voiced/voiced.toml                 (only when absent)
    /var/lib/voiced/models                  (voiced models prepare)
    systemctl daemon-reload; systemctl enable --now voiced.service

User mode (desktops with PipeWire/PulseAudio)::

    ~/.config/systemd/user/voiced.service
    ~/.config/voiced/voiced.toml            (only when absent)
    ~/.local/share/voiced/models
    systemctl --user daemon-reload; systemctl --user enable --now voiced.service
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import voiced
from voiced.errors import UsageError, VoicedError
from voiced.service import profiles

__all__ = [
    "InstallError",
    "InstallPaths",
    "InstallStep",
    "PrintHint",
    "RunCommand",
    "WriteFile",
    "apply",
    "default_venv_bin",
    "format_plan",
    "install",
    "plan_install",
    "rewrite_exec_start",
    "system_paths",
    "unit_source_dir",
    "user_paths",
]

UNIT_NAME = "voiced.service"
LINGER_HINT = (
    "A user service runs only while you are logged in. To start voiced at boot "
    "and keep it running after logout: sudo loginctl enable-linger $USER"
)


class InstallError(VoicedError):
    """A step of the installation failed."""

    code = "install"
    exit_code = 6


# --- steps ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallStep:
    description: str
    """One line saying what the step does, printed by a dry run."""
    action: Callable[[], None]
    """Performs the step; WriteFile, RunCommand or PrintHint from this module."""


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Write ``content`` to ``path`` (atomically), creating parent directories."""

    path: Path
    content: str
    mode: int = 0o644
    overwrite: bool = True
    """False: keep an existing file untouched (a user's configuration)."""

    def __call__(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.overwrite and self.path.exists():
                return
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            tmp.write_text(self.content, encoding="utf-8")
            tmp.chmod(self.mode)
            tmp.replace(self.path)
        except OSError as err:
            raise InstallError(
                f"cannot write {self.path}: {err}",
                fix="run as root for a system install, or use --user",
            ) from err


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run a command, failing the installation when it fails."""

    argv: tuple[str, ...]

    def __call__(self) -> None:
        try:
            subprocess.run(self.argv, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise InstallError(
                f"command failed: {shlex.join(self.argv)} ({err})",
                fix="fix the cause above and run the installer again; finished steps are redone",
            ) from err


@dataclass(frozen=True, slots=True)
class PrintHint:
    """Tell the user something they must do themselves."""

    text: str

    def __call__(self) -> None:
        print(f"hint: {self.text}", file=sys.stderr)


# --- where things go ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallPaths:
    unit_dir: Path
    """Where voiced.service goes."""
    config_file: Path
    models_dir: Path
    """Must match VOICED_MODELS_DIR in the unit file."""
    systemctl: tuple[str, ...]
    """``("systemctl",)`` or ``("systemctl", "--user")``."""


def system_paths(root: Path = Path("/")) -> InstallPaths:
    """Paths of a system install; ``root`` prefixes them (for tests and images)."""
    return InstallPaths(
        unit_dir=root / "etc/systemd/system",
        config_file=root / "etc/voiced/voiced.toml",
        # StateDirectory=voiced + VOICED_MODELS_DIR=%S/voiced/models
        models_dir=root / "var/lib/voiced/models",
        systemctl=("systemctl",),
    )


def user_paths(home: Path | None = None, environ: Mapping[str, str] | None = None) -> InstallPaths:
    """Paths of a user install (``$XDG_CONFIG_HOME`` honoured for configuration)."""
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    return InstallPaths(
        unit_dir=config_home / "systemd/user",
        config_file=config_home / "voiced/voiced.toml",
        # VOICED_MODELS_DIR=%h/.local/share/voiced/models in voiced-user.service
        models_dir=home / ".local/share/voiced/models",
        systemctl=("systemctl", "--user"),
    )


def unit_source_dir() -> Path:
    """``voiced/_data/systemd`` in an installed wheel, else the repo's ``systemd/``."""
    packaged = Path(voiced.__file__).parent / "_data" / "systemd"
    if packaged.is_dir():
        return packaged
    return Path(voiced.__file__).parent.parent / "systemd"


def default_venv_bin() -> Path:
    """The ``bin`` directory of the environment running this code."""
    return Path(sys.prefix) / "bin"


# --- planning --------------------------------------------------------------------


def rewrite_exec_start(unit_text: str, executable: Path) -> str:
    """Replace the program of every ``ExecStart=`` line, keeping its arguments."""
    program = _unit_escape(executable)
    lines = unit_text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("ExecStart="):
            _, _, args = line[len("ExecStart=") :].partition(" ")
            tail = " " + args if args else "\n"
            lines[i] = f"ExecStart={program}{tail}"
    return "".join(lines)


def _unit_escape(executable: Path) -> str:
    text = str(executable)
    if not executable.is_absolute():
        raise UsageError(f"the voiced executable must be an absolute path, not {text!r}")
    if any(c.isspace() or c in "\"'\\;" for c in text):
        raise UsageError(
            f"cannot put {text!r} on a systemd ExecStart= line",
            fix="create the venv in a directory without spaces, quotes or backslashes",
        )
    return text.replace("%", "%%")  # % starts a systemd specifier


def plan_install(
    user: bool,
    venv_bin: Path,
    *,
    paths: InstallPaths | None = None,
    source_dir: Path | None = None,
    jetson: bool = False,
    prepare_models: bool = True,
    enable: bool = True,
) -> list[InstallStep]:
    """The steps that install voiced; nothing is done until ``apply``.

    ``venv_bin`` is the venv's ``bin`` directory holding the ``voiced``
    script. ``jetson`` adds the CUDA drop-in (system mode only).
    """
    executable = venv_bin.absolute() / "voiced"
    if not executable.is_file():
        raise UsageError(
            f"{executable} does not exist",
            fix="pass --venv-bin with the bin/ directory of the venv voiced is installed in",
        )
    paths = paths or (user_paths() if user else system_paths())
    source = source_dir or unit_source_dir()
    steps = _file_steps(user, executable, paths, source, jetson=jetson and not user)
    if prepare_models:
        models = str(paths.models_dir)
        steps.append(_run(str(executable), "models", "prepare", "--models-dir", models))
    steps.append(_run(*paths.systemctl, "daemon-reload"))
    if enable:
        steps.append(_run(*paths.systemctl, "enable", "--now", UNIT_NAME))
    if user:
        steps.append(
            InstallStep(
                "remind you of `sudo loginctl enable-linger $USER` (start at boot)",
                PrintHint(LINGER_HINT),
            )
        )
    return steps


def _file_steps(
    user: bool, executable: Path, paths: InstallPaths, source: Path, *, jetson: bool
) -> list[InstallStep]:
    unit = _read(source / ("voiced-user.service" if user else "voiced.service"))
    unit_path = paths.unit_dir / UNIT_NAME
    steps = [
        InstallStep(
            f"write {unit_path} (ExecStart={executable})",
            WriteFile(unit_path, rewrite_exec_start(unit, executable)),
        )
    ]
    if jetson:
        dropin = paths.unit_dir / f"{UNIT_NAME}.d" / "jetson.conf"
        steps.append(
            InstallStep(
                f"write {dropin} (CUDA devices, group video)",
                WriteFile(dropin, _read(source / "voiced-jetson.conf")),
            )
        )
    steps.append(
        InstallStep(
            f"create {paths.config_file} from the example, unless it exists",
            WriteFile(paths.config_file, _read(source / "voiced.example.toml"), overwrite=False),
        )
    )
    return steps


def _run(*argv: str) -> InstallStep:
    return InstallStep(f"run {shlex.join(argv)}", RunCommand(tuple(argv)))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise InstallError(
            f"cannot read {path}: {err}",
            fix="reinstall voiced; the wheel ships its unit files in voiced/_data/systemd",
        ) from err


# --- doing -----------------------------------------------------------------------


def format_plan(steps: Sequence[InstallStep]) -> str:
    """Numbered step descriptions, one per line."""
    return "\n".join(f"{i}. {step.description}" for i, step in enumerate(steps, 1))


def apply(steps: Sequence[InstallStep], *, echo: Callable[[str], None] | None = None) -> None:
    """Run the steps in order; the first failure raises InstallError."""
    for i, step in enumerate(steps, 1):
        if echo is not None:
            echo(f"[{i}/{len(steps)}] {step.description}")
        step.action()


def install(
    user: bool,
    venv_bin: Path | None = None,
    *,
    dry_run: bool = False,
    profile: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[InstallStep]:
    """Plan, then print (``dry_run``) or apply, the installation; returns the plan.

    ``profile`` (default: detected) decides whether the Jetson drop-in is added.
    """
    name = profile if profile is not None else profiles.detect_profile()
    jetson = False
    if name is not None and not user:
        jetson = "tegra" in (m.lower() for m in profiles.load_profile(name).match)
    steps = plan_install(user, venv_bin or default_venv_bin(), jetson=jetson)
    if dry_run:
        echo("dry run; would:\n" + format_plan(steps))
        return steps
    if not user and os.geteuid() != 0:
        raise UsageError(
            "a system install needs root",
            fix="run it with sudo, or install a user service with --user",
        )
    apply(steps, echo=echo)
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m voiced.service.install [--user] [--dry-run] ...``."""
    parser = argparse.ArgumentParser(prog="python -m voiced.service.install")
    parser.add_argument("--user", action="store_true", help="install a user service")
    parser.add_argument("--dry-run", action="store_true", help="print the steps only")
    parser.add_argument("--venv-bin", type=Path, default=None, help="bin/ of voiced's venv")
    parser.add_argument("--profile", default=None, help="hardware profile (default: detect)")
    args = parser.parse_args(argv)
    try:
        install(args.user, args.venv_bin, dry_run=args.dry_run, profile=args.profile)
    except VoicedError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
