"""Home Assistant MQTT discovery: the entities a voiced device shows in HA.

Each config is retained under ``<prefix>/<component>/voiced_<id>/<object>/config``
with a stable ``unique_id`` (``voiced_<id>_state`` ...), the device block and the
availability topic, and is re-published when HA announces ``online`` on
``<prefix>/status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import voiced


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one device, under ``voiced/<device_id>/``."""

    device_id: str
    discovery_prefix: str = "homeassistant"
    commands: tuple[str, ...] = ("mute", "stop")
    """The commands the bridge takes; discovery offers only their entities."""
    transcripts: bool = True
    """Whether transcripts are published (else no "Last transcript" sensor)."""

    @property
    def base(self) -> str:
        return f"voiced/{self.device_id}/"

    @property
    def availability(self) -> str:
        return self.base + "availability"

    @property
    def state(self) -> str:
        return self.base + "state"

    @property
    def reply(self) -> str:
        return self.base + "reply"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def command(self, name: str) -> str:
        return self.base + name

    def event(self, name: str) -> str:
        return self.base + "event/" + name


def discovery_configs(topics: Topics) -> dict[str, str]:
    """Discovery topic -> JSON config, for the assist-state sensor, the
    last-transcript sensor, the mute switch and the "say" text entity (these two
    only when their command is allowed)."""
    node = f"voiced_{topics.device_id}"
    common: dict[str, Any] = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"voiced {topics.device_id}",
            "manufacturer": "voiced",
            "model": "voiced voice assistant",
            "sw_version": voiced.__version__,
        },
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("sensor", "state"): {
            "name": "Assist state",
            "state_topic": topics.state,
            "value_template": "{{ value_json.state }}",
            "icon": "mdi:account-voice",
        },
        ("sensor", "transcript"): {
            "name": "Last transcript",
            "state_topic": topics.event("transcript"),
            "value_template": "{{ value_json.text[:255] }}",
            "icon": "mdi:text-recognition",
        },
        ("switch", "mute"): {
            "name": "Mute",
            "command_topic": topics.command("mute"),
            "state_topic": topics.state,
            "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:microphone-off",
        },
        ("text", "say"): {
            "name": "Say",
            "command_topic": topics.command("say"),
            "max": 255,
            "mode": "text",
            "icon": "mdi:bullhorn",
        },
    }
    wanted = {("switch", "mute"): "mute", ("text", "say"): "say"}
    configs = {}
    for (component, object_id), entity in entities.items():
        command = wanted.get((component, object_id))
        if command is not None and command not in topics.commands:
            continue
        if object_id == "transcript" and not topics.transcripts:
            continue
        topic = f"{topics.discovery_prefix}/{component}/{node}/{object_id}/config"
        body = {**entity, "unique_id": f"{node}_{object_id}"}
        configs[topic] = json.dumps({**body, **common}, sort_keys=True)
    return configs
