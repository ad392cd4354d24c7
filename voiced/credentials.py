"""Secrets read from files: root-only paths or systemd credentials.

The config file of the system service must stay world-readable (the service
runs as a transient user), so tokens and passwords live elsewhere:

* ``token_file = "/etc/voiced/credentials/http_token"``: an absolute path;
* ``token_file = "http_token"``: a bare name, read from ``$CREDENTIALS_DIRECTORY``
  (systemd's ``LoadCredential=``, which copies a root-only file into a private
  directory only the service can read). The shipped unit loads the whole of
  /etc/voiced/credentials/ as ``voiced_<file>``; a bare name finds either form.

With neither the inline key nor the ``*_file`` key set, the conventional
credential (``http_token``, ``mqtt_password``) is used when the service has it,
so the shipped unit works without naming it in the config.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from voiced.errors import ConfigError

MAX_SECRET_BYTES = 4096
UNIT_PREFIX = "voiced_"
"""How the shipped unit's ``LoadCredential=voiced:/etc/voiced/credentials`` names files."""
_LOGGER = logging.getLogger(__name__)


def credentials_dir() -> Path | None:
    """``$CREDENTIALS_DIRECTORY`` when systemd gave the service credentials."""
    value = os.environ.get("CREDENTIALS_DIRECTORY", "")
    return Path(value) if value.startswith("/") else None


def secret_value(
    inline: str | None, file: str | None, key: str, credential: str | None = None
) -> str | None:
    """The secret: ``inline`` (from the config), else read from ``file``, else the
    ``credential`` when the service has it (None: no secret). A ConfigError names
    ``key`` when the file cannot be used."""
    if inline:
        return inline
    if file:
        value = read_secret(file, key)
        if not value:
            raise ConfigError(f"`{key}`: {file} is empty", fix="put the secret in the file")
        return value
    folder = credentials_dir()
    if credential and folder is not None:
        for name in (credential, f"{UNIT_PREFIX}{credential}"):
            if (folder / name).is_file():
                return read_secret(name, key) or None
    return None


def secret_path(name: str, key: str) -> Path:
    """An absolute path as is; a bare name inside ``$CREDENTIALS_DIRECTORY``."""
    if name.startswith("/"):
        return Path(name)
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(
            f"`{key}` = {name[:80]!r} must be an absolute path or a credential name",
            fix='e.g. "/etc/voiced/credentials/http_token" or "http_token"',
        )
    folder = credentials_dir()
    if folder is None:
        raise ConfigError(
            f"`{key}` = {name!r} names a systemd credential, but $CREDENTIALS_DIRECTORY "
            "is not set (not running under systemd with LoadCredential=)",
            fix=f"give an absolute path instead, or add LoadCredential={name}:/PATH to the unit",
        )
    prefixed = folder / f"{UNIT_PREFIX}{name}"
    return prefixed if not (folder / name).exists() and prefixed.exists() else folder / name


def read_secret(name: str, key: str) -> str:
    """The file's text without the trailing newline; ConfigError when unusable."""
    path = secret_path(name, key)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"`{key}`: {path} is not a regular file")
        if info.st_size > MAX_SECRET_BYTES:
            raise ConfigError(f"`{key}`: {path} is larger than {MAX_SECRET_BYTES} bytes")
        raw = path.read_bytes()[:MAX_SECRET_BYTES]
    except OSError as err:
        raise ConfigError(
            f"`{key}`: cannot read {path}: {err.strerror or err}",
            fix="check the path; for the system service use LoadCredential= (see README)",
        ) from err
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ConfigError(f"`{key}`: {path} is not UTF-8 text") from err
    if any(c in text for c in "\x00\r\n"):
        raise ConfigError(f"`{key}`: {path} must hold one line (no NUL or line breaks)")
    folder = credentials_dir()
    if info.st_mode & stat.S_IROTH and (folder is None or folder not in path.parents):
        _LOGGER.warning("%s is readable by every user; keep secrets root-only: chmod 600 %s",
                        path, path)  # fmt: skip
    return text
