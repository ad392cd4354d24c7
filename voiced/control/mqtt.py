"""The MQTT bridge: state, events and commands on ``voiced/<device_id>/``, and
Home Assistant discovery.

The broker is peripheral: it may be missing, killed or restarted at any time and
the voice path never waits for it. Everything sent goes through a bounded queue
(MqttPublisher) that the connected client drains; while disconnected, messages
are dropped and the retained state is re-published on reconnect. ``run()``
reconnects with exponential backoff (1 s to 30 s, jittered), logging an outage
once and its end once. Every incoming payload is hostile until checked.

Anyone who can publish on the broker can command the assistant, and home
brokers are often anonymous, so only the commands in ``[mqtt] commands`` are
subscribed to (default: mute and stop, which Home Assistant's mute switch and
nothing dangerous need), and a retained command is never run: it would be
replayed on every reconnect. Lock the broker down too (README: broker ACL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from voiced.control.discovery import Topics, discovery_configs
from voiced.control.hooks import short_names
from voiced.control.surface import MAX_TEXT_CHARS, AssistantSurface, snapshot
from voiced.credentials import secret_value
from voiced.errors import ConfigError, VoicedError
from voiced.house.arbiter import HouseArbiter, HouseTopics
from voiced.pipeline.events import Event, EventType
from voiced.pipeline.state import State
from voiced.ratelimit import RateLimitedLog
from voiced.settings import MqttSettings
from voiced.tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)
MAX_PAYLOAD_BYTES = 4096
OUTBOX_LEN = 256
INBOX_LEN = 64
PUBLISH_TIMEOUT_S = 10.0
STABLE_CONNECTION_S = 30.0
"""A connection that lasted this long resets the backoff."""
COMMANDS = ("say", "ask", "listen", "stop", "mute")
PERSONAL_EVENTS = frozenset({"transcript", "reply", "intent"})
"""Events that carry what was said; published only with ``[mqtt] transcripts``."""


MACHINE_ID = Path("/etc/machine-id")


def device_id_for(
    settings: MqttSettings, hostname: str | None = None, machine_id: Path = MACHINE_ID
) -> str:
    """settings.device_id, else the host name and the first 8 hex digits of
    /etc/machine-id (two boards both called raspberrypi must not share topics and
    Home Assistant unique ids), as [a-z0-9_-] (safe in any topic)."""
    if settings.device_id:
        raw = settings.device_id
    else:
        raw = hostname or socket.gethostname()
        suffix = _machine_suffix(machine_id)
        raw = f"{raw[:55]}_{suffix}" if suffix else raw
    cleaned = re.sub(r"[^a-z0-9_-]+", "_", raw.lower()).strip("_-")[:64]
    return cleaned or "voiced"


def _machine_suffix(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:64].strip().lower()
    except OSError:
        return ""
    return text[:8] if re.fullmatch(r"[0-9a-f]{32}", text) else ""


HOLD_S = 60.0
"""How long a command published while the broker is away waits for it to return."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: str | bytes
    qos: int = 0
    retain: bool = False
    hold: bool = False
    """Keep it while disconnected (an intent's command), instead of dropping it."""
    queued_at_s: float = field(default_factory=time.monotonic)


class MqttPublisher:
    """The outgoing queue shared by the bridge, user intents and hooks.

    ``publish`` never blocks. What intents and hooks publish with QoS 1 (a light
    to switch on) is held while the broker is away and sent when it returns, if
    that is within ``HOLD_S``: the assistant already said "turning on the
    lights". The bridge's own state and events are dropped while disconnected
    (state is republished on reconnect). A full queue drops, with a warning.
    """

    def __init__(self, maxsize: int = OUTBOX_LEN) -> None:
        self.connected = False
        self.dropped = 0
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=maxsize)
        self._log = RateLimitedLog(_LOGGER)

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> bool:
        return self.offer(Outgoing(topic, payload, qos, retain, hold=qos >= 1), warn=True)

    def offer(self, message: Outgoing, *, warn: bool = False) -> bool:
        if (self.connected or message.hold) and not self._queue.full():
            self._queue.put_nowait(message)
            return True
        self.dropped += 1
        if warn:
            why = "not connected to the broker" if not self.connected else "the queue is full"
            self._log.warning("drop", "MQTT message to %s dropped: %s", message.topic, why)
        return False

    @property
    def pending(self) -> int:
        """Messages queued and not yet sent."""
        return self._queue.qsize()

    async def next(self) -> Outgoing:
        return await self._queue.get()

    def clear(self) -> None:
        """Forget what was queued for the lost connection, except held commands."""
        kept = []
        while not self._queue.empty():
            message = self._queue.get_nowait()
            if message.hold:
                kept.append(message)
        for message in kept:
            self._queue.put_nowait(message)

    def fresh(self, message: Outgoing) -> bool:
        if time.monotonic() - message.queued_at_s <= HOLD_S:
            return True
        self.dropped += 1
        self._log.warning("stale", "MQTT message to %s dropped: the broker was away "
                          "longer than %.0f s", message.topic, HOLD_S)  # fmt: skip
        return False


class MqttBridge:
    """``await run()`` until cancelled; ``reconnects`` counts recoveries for metrics."""

    def __init__(
        self, assistant: AssistantSurface, settings: MqttSettings,
        publisher: MqttPublisher | None = None, *, backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0, house: HouseArbiter | None = None, area: str = "",
    ) -> None:  # fmt: skip
        """``house``: the wake-word arbitration's claims and results go through here;
        ``area``: this device's room, for ``voiced/room/<area>/say``."""
        if not settings.host:
            raise ConfigError("[mqtt] host is not set", fix="set mqtt.host in the config file")
        self.assistant = assistant
        self.settings = settings
        self.publisher = publisher or MqttPublisher()
        self.password = secret_value(settings.password, settings.password_file,
                                     "mqtt.password_file", "mqtt_password")  # fmt: skip
        self.commands = tuple(name for name in COMMANDS if name in settings.commands)
        self.topics = Topics(device_id_for(settings), settings.discovery_prefix, self.commands,
                             transcripts=settings.transcripts)  # fmt: skip
        self.house = house
        self.house_topics = HouseTopics()
        self.house_say = (
            [self.house_topics.say, *([HouseTopics.room_say(area)] if area else [])]
            if "say" in self.commands else []
        )  # fmt: skip
        """House-wide and room announcements: commands, so only with ``say`` allowed."""
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.reconnects = 0
        self.connections = 0
        self.ignored = 0
        """Incoming payloads ignored as malformed or retained (for tests and logs)."""
        self._failures = 0
        self._down_since: float | None = None
        self._asking = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = RateLimitedLog(_LOGGER)
        assistant.bus.add_listener(self._on_event)

    @property
    def connected(self) -> bool:
        return self.publisher.connected

    @property
    def failed_attempts(self) -> int:
        """Connection attempts failed since the connection was last stable."""
        return self._failures

    # -- connection -----------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; on cancel, ``offline`` is published."""
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._session()
                except aiomqtt.MqttError as err:
                    self._went_down(str(err), time.monotonic() - started)
                except Exception as err:  # the bridge is peripheral: never let it die
                    _LOGGER.exception("MQTT bridge error; reconnecting")
                    self._went_down(repr(err), time.monotonic() - started)
                await asyncio.sleep(self._next_delay())
        finally:
            for task in self._tasks:
                task.cancel()

    def _client(self) -> aiomqtt.Client:
        settings = self.settings
        tls = ssl.create_default_context(cafile=settings.ca_file) if settings.tls else None
        return aiomqtt.Client(
            settings.host or "", settings.port, username=settings.username,
            password=self.password, identifier=f"voiced-{self.topics.device_id}",
            will=aiomqtt.Will(self.topics.availability, "offline", qos=1, retain=True),
            keepalive=30, timeout=PUBLISH_TIMEOUT_S, tls_context=tls,
            max_queued_incoming_messages=INBOX_LEN,
        )  # fmt: skip

    async def _session(self) -> None:
        async with self._client() as client:
            self._came_up()
            try:
                await self._announce(client)
                subscriptions = [(self.topics.command(name), 1) for name in self.commands]
                subscriptions += [(topic, 1) for topic in self.house_say]
                if self.house is not None:
                    subscriptions += [(topic, 0) for topic in self.house.subscriptions()]
                await client.subscribe([*subscriptions, (self.topics.ha_status, 1)])
                await self._serve(client)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await client.publish(self.topics.availability, "offline", qos=1,
                                         retain=True, timeout=1.0)  # fmt: skip
                raise
            finally:
                self.publisher.connected = False
                self.publisher.clear()

    async def _serve(self, client: aiomqtt.Client) -> None:
        reader = asyncio.create_task(self._read(client))
        writer = asyncio.create_task(self._drain(client))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait({reader, writer})
        for task in done:
            task.result()
        raise aiomqtt.MqttError("the message loop ended")

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Availability, discovery and the current state: on every (re)connect."""
        await client.publish(self.topics.availability, "online", qos=1, retain=True)
        await self._publish_discovery(client)
        await client.publish(self.topics.state, self._state_json(), qos=1, retain=True)
        self.publisher.connected = True

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        for topic, config in discovery_configs(self.topics).items():
            await client.publish(topic, config, qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            message = await self.publisher.next()
            if not self.publisher.fresh(message):
                continue
            await client.publish(message.topic, message.payload, qos=message.qos,
                                 retain=message.retain)  # fmt: skip

    def _came_up(self) -> None:
        self.connections += 1
        where = f"{self.settings.host}:{self.settings.port}"
        if self._down_since is not None:
            self.reconnects += 1 if self.connections > 1 else 0  # not a late first connection
            _LOGGER.info("MQTT broker %s reachable again after %.0f s", where,
                         time.monotonic() - self._down_since)  # fmt: skip
        else:
            _LOGGER.info("connected to MQTT broker %s as %s", where, self.topics.base)
        self._down_since = None

    def _went_down(self, reason: str, lasted_s: float) -> None:
        if lasted_s >= STABLE_CONNECTION_S:
            self._failures = 0
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            _LOGGER.warning("MQTT broker %s:%d unreachable (%s); retrying in the background",
                            self.settings.host, self.settings.port, reason)  # fmt: skip
        else:
            _LOGGER.debug("MQTT reconnect attempt failed: %s", reason)

    def _next_delay(self) -> float:
        exponent = min(self._failures - 1, 16)
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2.0**exponent)
        return delay * random.uniform(0.75, 1.0)

    # -- outgoing -------------------------------------------------------------

    def _state_json(self) -> str:
        return json.dumps(snapshot(self.assistant))

    def _on_event(self, event: Event) -> None:
        """A bus listener: quick, never blocks, never raises."""
        if event.type in (EventType.STATE_CHANGED, EventType.MUTED):
            self.publisher.offer(Outgoing(self.topics.state, self._state_json(), 1, True))
        for name in short_names(event):
            if name in PERSONAL_EVENTS and not self.settings.transcripts:
                continue
            body = {**event.data, "type": event.type.value, "timestamp": event.wall_time_s}
            payload = json.dumps(body, ensure_ascii=False, default=str)
            self.publisher.offer(Outgoing(self.topics.event(name), payload, 0, False))

    # -- incoming -------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                await self._handle(client, message.topic.value, message.payload,
                                   retained=bool(message.retain))  # fmt: skip
            except aiomqtt.MqttError:
                raise
            except Exception:  # a command must never end the loop
                _LOGGER.exception("MQTT command on %s failed", message.topic.value)

    async def _handle(
        self, client: aiomqtt.Client, topic: str, payload: object, *, retained: bool = False
    ) -> None:
        if topic == self.topics.ha_status:
            if payload in (b"online", "online"):
                await self._publish_discovery(client)
            return
        if self.house is not None and not retained:
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            if self.house.on_message(topic, raw):
                return
        command = "say" if topic in self.house_say else topic.removeprefix(self.topics.base)
        if command not in self.commands:
            return  # not subscribed; a broker may still deliver it (overlapping ACLs)
        if retained:
            self.ignored += 1
            self._log.warning(f"retained-{command}", "MQTT %s: ignored a retained command "
                              "(it would be replayed on every reconnect); clear it with "
                              "mosquitto_pub -r -n -t %s", command, topic)  # fmt: skip
            return
        text = self._payload_text(command, payload)
        if text is None:
            return
        if command in ("say", "ask", "mute") and not text:
            self._ignore(command, "an empty payload")
        elif command == "say":
            self._say(text)
        elif command == "ask":
            self._ask(text)
        elif command == "listen":
            if self.assistant.state is not State.MUTED:
                self.assistant.listen()
        elif command == "stop":
            self.assistant.stop()
        elif command == "mute":
            self._mute(text)

    def _payload_text(self, command: str, payload: object) -> str | None:
        if isinstance(payload, bytes | bytearray):
            raw = bytes(payload)
        elif payload is None:
            raw = b""
        else:
            raw = str(payload).encode()
        problem = None
        if len(raw) > MAX_PAYLOAD_BYTES:
            problem = f"a payload of {len(raw)} bytes (at most {MAX_PAYLOAD_BYTES})"
        else:
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                problem = "a payload that is not UTF-8"
            else:
                if "\x00" in text or len(text) > MAX_TEXT_CHARS:
                    problem = f"a payload with NUL or over {MAX_TEXT_CHARS} characters"
        if problem is not None:
            self._ignore(command, problem)
            return None
        return text

    def _ignore(self, command: str, what: str) -> None:
        self.ignored += 1
        self._log.warning(f"ignore-{command}", "MQTT %s: ignored %s", command, what)

    def _say(self, text: str) -> None:
        if self.assistant.state is State.MUTED:
            self._log.warning("say-muted", "MQTT say ignored: the assistant is muted")
            return
        self.assistant.announce(text)

    def _mute(self, text: str) -> None:
        if text.upper() not in ("ON", "OFF"):
            self._ignore("mute", "a payload other than ON or OFF")
            return
        self.assistant.set_muted(text.upper() == "ON")

    def _ask(self, text: str) -> None:
        if self._asking or self.assistant.busy:
            self._reply({"text": text, "error": "busy"})
            return
        self._asking = True
        task = asyncio.create_task(self._run_ask(text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_ask(self, text: str) -> None:
        try:
            turn = await self.assistant.ask(text, speak=False)
            self._reply({"text": text, "reply": turn.reply, "intent": turn.intent,
                         "slots": turn.slots})  # fmt: skip
        except VoicedError as err:
            self._reply({"text": text, "error": err.code, "message": err.message})
        except Exception as err:
            _LOGGER.exception("MQTT ask failed")
            self._reply({"text": text, "error": "internal", "message": repr(err)})
        finally:
            self._asking = False

    def _reply(self, body: dict[str, object]) -> None:
        payload = json.dumps(body, ensure_ascii=False, default=str)
        self.publisher.offer(Outgoing(self.topics.reply, payload, 1, False))
