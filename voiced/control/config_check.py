"""``voiced config check FILE``: every problem in a config file, each naming its line.

The settings loader stops at the first wrong key (with its line); after it, each
``[[intent]]`` and ``[[hook]]`` table is checked on its own, so one run lists
every broken table, and the HTTP bind rule is applied.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voiced.audio.devices import device_of, is_device_spec
from voiced.control.hooks import load_hook
from voiced.control.http_api import check_bind, parse_listen
from voiced.errors import ConfigError, VoicedError
from voiced.intents.user import TableError, load_user_intent
from voiced.settings import load_settings


def check_config(path: Path | str) -> list[str]:
    """Problems found in the config file at ``path``, rendered; [] when it is valid."""
    path = Path(path)
    try:
        settings = load_settings(path)
    except ConfigError as err:
        return [err.render()]
    locator = TableLocator(path.read_text(encoding="utf-8"), str(path))
    problems: list[str] = []
    names: dict[str, int] = {}
    for index, table in enumerate(settings.intent):
        try:
            intent = load_user_intent(table, index)
            if intent.mqtt is not None and not settings.mqtt.host:
                raise _needs_broker("intent", index, table)
        except TableError as err:
            problems.append(locator.render(err))
            continue
        if intent.name in names:
            duplicate = TableError(
                "intent", index, intent.name, "name", "is used by an earlier intent"
            )
            problems.append(locator.render(duplicate))
        names[intent.name] = index
    for index, table in enumerate(settings.hook):
        try:
            if load_hook(table, index).mqtt is not None and not settings.mqtt.host:
                raise _needs_broker("hook", index, table)
        except TableError as err:
            problems.append(locator.render(err))
    has_token = bool(settings.http.token or settings.http.token_file)
    problems += _check_http(settings.http.listen, has_token, locator)
    problems += _check_audio(settings.audio.input, settings.audio.output, locator)
    return problems


def _check_audio(input_spec: str | None, output_spec: str | None,
                 locator: TableLocator) -> list[str]:  # fmt: skip
    """The device syntax the daemon will use (the device itself is voiced doctor's)."""
    problems = []
    for key, spec in (("input", input_spec), ("output", output_spec)):
        if spec is None or not is_device_spec(spec):
            continue
        try:
            device_of(spec)
        except VoicedError as err:
            where = locator.key_line("audio", key)
            problems.append(ConfigError(f"{where}: audio.{key}: {err.message}",
                                        fix=err.fix).render())  # fmt: skip
    return problems


def _needs_broker(section: str, index: int, table: dict[str, Any]) -> TableError:
    name = table.get("name")
    return TableError(section, index, name if isinstance(name, str) else None, "mqtt",
                      "needs a broker, but [mqtt] host is not set",
                      "set mqtt.host, or use http (intents) or webhook (hooks)")  # fmt: skip


def _check_http(listen: str | None, has_token: bool, locator: TableLocator) -> list[str]:
    if not listen or listen.startswith("unix:"):
        return []
    try:
        host, _ = parse_listen(listen)
        check_bind(host, "set" if has_token else None)
    except ConfigError as err:
        where = locator.key_line("http", "listen")
        return [ConfigError(f"{where}: {err.message}", fix=err.fix).render()]
    return []


class TableLocator:
    """Finds the line of the n-th ``[[section]]`` table, and of a key inside it."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def render(self, err: TableError) -> str:
        where = self.where(err.section, err.index, err.key)
        return ConfigError(f"{where}: {err.message}", fix=err.fix).render()

    def where(self, section: str, index: int, key: str) -> str:
        header = re.compile(rf"^\s*\[\[\s*{re.escape(section)}\s*\]\]")
        starts = [n for n, line in enumerate(self.lines) if header.match(line)]
        if index >= len(starts):
            return self.key_line(None, section)
        start = starts[index]
        first = re.escape(key.split(".")[0])
        key_re = re.compile(rf"^\s*[\"']?{first}[\"']?\s*(=|\.)")
        for number in range(start + 1, len(self.lines)):
            line = self.lines[number]
            if line.lstrip().startswith("[") and not line.lstrip().startswith(f"[{section}."):
                break
            if key_re.match(line):
                return f"{self.source}, line {number + 1}"
        return f"{self.source}, line {start + 1}"

    def key_line(self, table: str | None, key: str) -> str:
        in_table = table is None
        key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if stripped.startswith("["):
                in_table = table is not None and stripped.strip("[] ") == table
            elif in_table and key_re.match(line):
                return f"{self.source}, line {number}"
        return self.source
