"""The control plane in one call: HTTP API, MQTT bridge and hooks, started and stopped.

``voiced run`` does, in order:

    publisher = mqtt_publisher(settings)               # None when [mqtt] host is unset
    intents = load_user_intents(settings.intent, publisher=publisher)
    assistant = Assistant(..., extra_intents=intents)
    plane = await ControlPlane.start(assistant, settings, publisher, xruns=lambda: source.xruns)
    ...
    await plane.close()

Each part is optional: no ``[http] listen``, no server; no ``[mqtt] host``, no
bridge; no ``[[hook]]``, no runner. Nothing here can stop the voice path: the
bridge reconnects on its own and hooks run in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from voiced.control.hooks import HookRunner, load_hooks
from voiced.control.http_api import HttpServer, start_http
from voiced.control.metrics import Metrics
from voiced.control.mqtt import MqttBridge, MqttPublisher, Outgoing, device_id_for
from voiced.control.surface import AssistantSurface
from voiced.engines.wake_names import word_name
from voiced.house.arbiter import HouseArbiter
from voiced.settings import Settings
from voiced.tasks import cancel_and_wait

BRIDGE_STOP_RETRY_S = 2.0

_LOGGER = logging.getLogger(__name__)


def mqtt_publisher(settings: Settings) -> MqttPublisher | None:
    """The queue intents and hooks publish through; None when MQTT is not configured."""
    return MqttPublisher() if settings.mqtt.host else None


def house_arbiter(settings: Settings, publisher: MqttPublisher | None) -> HouseArbiter | None:
    """The wake-word arbitration, on with MQTT unless ``[house] arbitrate = false``."""
    if publisher is None or not settings.house.arbitrate:
        return None

    def send(topic: str, payload: str, qos: int) -> None:
        publisher.offer(Outgoing(topic, payload, qos, False))

    return HouseArbiter(
        device_id_for(settings.mqtt), settings.house, send, lambda: publisher.connected,
        phrase=word_name(settings.wake.model),
    )  # fmt: skip


@dataclass(slots=True)
class ControlPlane:
    metrics: Metrics
    hooks: HookRunner
    http: HttpServer | None = None
    bridge: MqttBridge | None = None
    bridge_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, assistant: AssistantSurface, settings: Settings,
        publisher: MqttPublisher | None = None, *, xruns: Callable[[], int] | None = None,
        house: HouseArbiter | None = None,
    ) -> ControlPlane:  # fmt: skip
        """Validate hooks (ConfigError), then start hooks, the bridge and the server."""
        metrics = Metrics()
        metrics.attach(assistant.bus, assistant.on_turn_done)
        if xruns is not None:
            metrics.xruns = xruns
        hooks = HookRunner(load_hooks(settings.hook), assistant.bus, publisher=publisher)
        plane = cls(metrics, hooks)
        if settings.mqtt.host:
            bridge = MqttBridge(assistant, settings.mqtt, publisher, house=house,
                                area=settings.house.area)  # fmt: skip
            plane.bridge = bridge
            metrics.mqtt_reconnects = lambda: bridge.reconnects
        if settings.http.listen:
            plane.http = await start_http(assistant, settings.http, metrics=metrics)
        hooks.start()
        if plane.bridge is not None:
            plane.bridge_task = asyncio.create_task(plane.bridge.run(), name="voiced-mqtt")
        return plane

    async def close(self) -> None:
        """Stop the server, say ``offline`` over MQTT, end the hooks."""
        if self.http is not None:
            await self.http.close()
        if self.bridge_task is not None:
            # Cancelled again only after the bridge's 1 s "offline" publish had its chance.
            await cancel_and_wait({self.bridge_task}, retry_s=BRIDGE_STOP_RETRY_S)
        await self.hooks.close()
