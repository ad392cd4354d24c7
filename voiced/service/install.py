"""Install voiced as a systemd service: a plan of steps, printed or applied.

``plan_install`` builds the steps without touching the system, so a dry run
prints exactly what ``apply`` would do. The unit files are the static files in
``systemd/`` (``voiced/_data/systemd`` in a wheel); only their ``ExecStart=``
path is rewritten to the venv being installed from.

System mode (appliances, raw ALSA, needs root)::

    /etc/systemd/system/voiced.service      (+ voiced.service.d/jetson.conf)
    /etc/voiced/voiced.toml                 (only when absent; world-readable, no secrets)
    /etc/voiced/credentials/                (0700: http_token, mqtt_password files)
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
    "MakeDirectory",
    "PrintHint",
    "RunCommand",
    "WriteFile",
    "apply",
    "check_service_can_run",
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
class MakeDirectory:
    """Create ``path`` with ``mode`` (kept as it is when it exists)."""

    path: Path
    mode: int = 0o700

    def __call__(self) -> None:
        try:
            self.path.mkdir(mode=self.mode, parents=True, exist_ok=True)
        except OSError as err:
            raise InstallError(f"cannot create {self.path}: {err}",
                               fix="run as root for a system install") from err  # fmt: skip


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
    credentials_dir: Path | None
    """Root-only secrets the system unit loads (LoadCredential=); None for a user unit."""
    models_dir: Path
    """Must match VOICED_MODELS_DIR in the unit file."""
    systemctl: tuple[str, ...]
    """``("systemctl",)`` or ``("systemctl", "--user")``."""


def system_paths(root: Path = Path("/")) -> InstallPaths:
    """Paths of a system install; ``root`` prefixes them (for tests and images)."""
    return InstallPaths(
        unit_dir=root / "etc/systemd/system",
        config_file=root / "etc/voiced/voiced.toml",
        credentials_dir=root / "etc/voiced/credentials",
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
        credentials_dir=None,
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
        # --config: the models the unit's config asks for (its slm.model tier, say)
        steps.append(_run(str(executable), "models", "prepare", "--config",
                          str(paths.config_file), "--models-dir", models))  # fmt: skip
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
    if paths.credentials_dir is not None:
        steps.append(
            InstallStep(
                f"create {paths.credentials_dir} (0700: root-only secrets, loaded by the "
                "unit as systemd credentials)",
                MakeDirectory(paths.credentials_dir),
            )
        )
    return steps


HIDDEN_FROM_SERVICE = (
    (Path("/home"), "ProtectHome=yes"),
    (Path("/root"), "ProtectHome=yes"),
    (Path("/run/user"), "ProtectHome=yes"),
    (Path("/tmp"), "PrivateTmp=yes"),  # noqa: S108 (a place named, not a file made)
    (Path("/var/tmp"), "PrivateTmp=yes"),  # noqa: S108
)
"""Where the hardened system unit cannot see: a venv (or its Python) there cannot start."""
SERVICE_VENV = Path("/opt/voiced/venv")


def check_service_can_run(executable: Path) -> None:
    """UsageError naming the fix when the system unit could not run ``executable``:
    the venv or the Python it links to is hidden by the sandbox (a clone under
    /home, a pyenv Python under /root: 203/EXEC or an import error at start), or
    not readable by the transient user DynamicUser= runs it as."""
    venv = executable.parent.parent
    python = executable.parent / "python"
    candidates = [executable, python, *_shebang(executable)]
    fix = (
        f"install voiced where the service can run it, from a system Python:\n"
        f"    sudo /usr/bin/python3 -m venv {SERVICE_VENV}\n"
        f"    sudo {SERVICE_VENV}/bin/pip install /path/to/voiced   (the clone or the wheel)\n"
        f"    sudo {SERVICE_VENV}/bin/voiced service install\n"
        "  or install a user service instead: voiced service install --user"
    )
    for path in candidates:
        exists = path.exists()
        for real in (path.absolute(), *([path.resolve()] if exists else [])):
            for hidden, why in HIDDEN_FROM_SERVICE:
                if real == hidden or hidden in real.parents:
                    raise UsageError(
                        f"{real} (from the venv {venv}) is under {hidden}, which the "
                        f"hardened system unit cannot see ({why})", fix=fix,
                    )  # fmt: skip
        problem = _unreadable_by_others(path.resolve()) if exists else None
        if problem is not None:
            raise UsageError(
                f"{problem}: the service runs as a transient user (DynamicUser=yes)", fix=fix
            )


def _shebang(executable: Path) -> list[Path]:
    try:
        first = executable.read_bytes()[:512].split(b"\n", 1)[0]
    except OSError:
        return []
    if not first.startswith(b"#!/"):
        return []
    return [Path(first[2:].split()[0].decode("utf-8", "replace"))]


def _unreadable_by_others(path: Path) -> str | None:
    try:
        if path.stat().st_mode & 0o005 != 0o005:
            return f"{path} is not readable and executable by other users"
        for folder in path.parents:
            if not folder.stat().st_mode & 0o001:
                return f"{folder} is not searchable by other users"
    except OSError as err:
        return f"{path}: {err}"
    return None


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
    bin_dir = venv_bin or default_venv_bin()
    steps = plan_install(user, bin_dir, jetson=jetson)
    problem = None
    if not user:
        try:
            check_service_can_run(bin_dir.absolute() / "voiced")
        except UsageError as err:
            problem = err
    if dry_run:
        echo("dry run; would:\n" + format_plan(steps))
        if problem is not None:
            echo("but would refuse to install:\n" + problem.render())
        return steps
    if problem is not None:
        raise problem
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
