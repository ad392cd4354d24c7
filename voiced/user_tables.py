"""What the user's config tables (``[[intent]]``, ``[[hook]]``) share: the error that
names a table and key, the MQTT publisher they send through, and how a value
becomes a topic level. Neutral ground, so hooks need not import from intents."""

from __future__ import annotations

import re
from typing import Protocol

from voiced.errors import ConfigError


class Publisher(Protocol):
    """Sends an MQTT message without waiting (see voiced.control.mqtt.MqttPublisher)."""

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Queue the message; False when it was dropped (not connected, queue full)."""
        ...


class TableError(ConfigError):
    """A wrong ``[[intent]]`` or ``[[hook]]`` table: says which one and which key."""

    def __init__(
        self, section: str, index: int, name: str | None, key: str, problem: str,
        fix: str | None = None,
    ) -> None:  # fmt: skip
        self.section, self.index, self.key = section, index, key
        label = f"{section} #{index + 1}" + (f" ({name!r})" if name else "")
        super().__init__(f"{label}: `{key}` {problem}", fix=fix)


def topic_value(value: str) -> str:
    """A slot value as one MQTT topic level: no wildcards, separators or spaces."""
    return re.sub(r"[\s/#+]+", "_", value.strip()) or "_"
