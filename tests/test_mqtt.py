"""The MQTT bridge against a real mosquitto on a free loopback port.

A second aiomqtt client watches what the bridge publishes and sends it commands.
The broker is killed and restarted to prove the bridge reconnects and that the
assistant's work never waits on it. Skipped only when mosquitto is not installed
(apt-get install mosquitto).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_http_api import FakeAssistant
from voiced.control.discovery import Topics, discovery_configs
from voiced.control.mqtt import (
    COMMANDS,
    MAX_PAYLOAD_BYTES,
    MqttBridge,
    MqttPublisher,
    Outgoing,
    device_id_for,
)
from voiced.control.plane import ControlPlane, mqtt_publisher
from voiced.intents.normalize import normalize
from voiced.intents.user import load_user_intents
from voiced.pipeline.events import Event, EventType
from voiced.settings import HttpSettings, MqttSettings, Settings
from voiced.tasks import cancel_and_wait

TIMEOUT_S = 30.0
T = TypeVar("T")
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (apt-get install -y mosquitto)"
)
REPO = Path(__file__).resolve().parents[1]
_ids = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A mosquitto process on a loopback port; kill() and start() again at will."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "persistence false\nlog_type none\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)
            self.process = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = Broker(tmp_path_factory.mktemp("mosquitto"))
    running.start()
    yield running
    running.kill()


def mqtt_settings(broker: Broker, device_id: str) -> MqttSettings:
    """Every command allowed: these tests exercise each of them."""
    return MqttSettings(host="127.0.0.1", port=broker.port, device_id=device_id,
                        commands=COMMANDS)  # fmt: skip


class Observer:
    """A second client: records (topic, payload, retain) and sends commands."""

    def __init__(self, port: int, *topics: str) -> None:
        self.client = aiomqtt.Client("127.0.0.1", port, identifier=f"observer-{next(_ids)}")
        self.topics = topics
        self.seen: list[tuple[str, bytes, bool]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Observer:
        await self.client.__aenter__()
        for topic in self.topics:
            await self.client.subscribe(topic, qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.seen.append((message.topic.value, payload, message.retain))

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for seen_topic, payload, _ in self.seen if seen_topic == topic]

    async def wait(self, topic: str, payload: bytes | None = None, count: int = 1) -> None:
        await until(lambda: len([p for p in self.payloads(topic) if payload in (None, p)]) >= count)

    async def send(self, topic: str, payload: bytes | str) -> None:
        await self.client.publish(topic, payload, qos=1)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (the condition is the broker's or bridge's work)
        await asyncio.sleep(0.01)


async def start_bridge(
    fake: FakeAssistant, settings: MqttSettings, **kwargs: Any
) -> tuple[MqttBridge, asyncio.Task[None]]:
    bridge = MqttBridge(fake, settings, backoff_initial_s=0.05, backoff_max_s=0.5, **kwargs)
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    return bridge, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S))


def test_device_id_is_sanitized() -> None:
    assert device_id_for(MqttSettings(device_id="Kitchen Pi/#1+")) == "kitchen_pi_1"
    nowhere = Path("/nonexistent/machine-id")
    assert device_id_for(MqttSettings(), "My-Host.local", nowhere) == "my-host_local"
    assert device_id_for(MqttSettings(device_id="###")) == "voiced"
    assert device_id_for(MqttSettings(device_id="../../etc")) == "etc"


def test_availability_state_discovery_and_republish(broker: Broker) -> None:
    topics = Topics("disc", commands=COMMANDS)
    configs = discovery_configs(topics)

    async def main() -> None:
        fake = FakeAssistant()
        _, task = await start_bridge(fake, mqtt_settings(broker, "disc"))
        async with Observer(
            broker.port, "voiced/disc/#", "homeassistant/+/voiced_disc/+/config"
        ) as obs:
            await obs.wait(topics.availability, b"online")
            await obs.wait(topics.state)
            await until(lambda: all(obs.payloads(topic) for topic in configs))
            assert all(retain for _, _, retain in obs.seen), "retained: seen on subscribe"
            assert json.loads(obs.payloads(topics.state)[-1])["state"] == "idle"
            for topic, config in configs.items():
                body = json.loads(obs.payloads(topic)[0])
                assert body == json.loads(config)
                assert body["availability_topic"] == "voiced/disc/availability"
                assert body["device"]["identifiers"] == ["voiced_disc"]
            ids = {json.loads(c)["unique_id"] for c in configs.values()}
            assert ids == {
                "voiced_disc_state",
                "voiced_disc_transcript",
                "voiced_disc_mute",
                "voiced_disc_say",
            }
            await obs.send("homeassistant/status", "online")
            await until(lambda: all(len(obs.payloads(topic)) == 2 for topic in configs))
            fake.listen()  # state changes are published as they happen
            await until(lambda: json.loads(obs.payloads(topics.state)[-1])["state"] == "listening")
            fake.bus.publish(Event(EventType.STT_END, {"turn_id": 1, "text": "hello there"}))
            await obs.wait(topics.event("transcript"))
            assert json.loads(obs.payloads(topics.event("transcript"))[0])["text"] == "hello there"
            await stop(task)
            await obs.wait(topics.availability, b"offline")  # a clean stop says offline too

    run(main())


def test_last_will_is_offline_when_the_bridge_dies(broker: Broker) -> None:
    script = (
        "import asyncio, sys\n"
        "from tests.test_http_api import FakeAssistant\n"
        "from voiced.control.mqtt import MqttBridge\n"
        "from voiced.settings import MqttSettings\n"
        "settings = MqttSettings(host='127.0.0.1', port=int(sys.argv[1]), device_id='lwt')\n"
        "asyncio.run(MqttBridge(FakeAssistant(), settings).run())\n"
    )

    async def main() -> None:
        async with Observer(broker.port, "voiced/lwt/availability") as obs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script,
                str(broker.port),
                cwd=REPO,
            )
            try:
                await obs.wait("voiced/lwt/availability", b"online")
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
            await obs.wait("voiced/lwt/availability", b"offline")
        async with Observer(broker.port, "voiced/lwt/availability") as late:
            await late.wait("voiced/lwt/availability", b"offline")  # retained
            assert late.seen[-1][2] is True

    run(main())


def test_commands_reach_the_assistant_and_hostile_payloads_do_not(broker: Broker) -> None:
    async def main() -> None:
        fake = FakeAssistant()
        bridge, task = await start_bridge(fake, mqtt_settings(broker, "cmd"))
        async with Observer(broker.port, "voiced/cmd/reply") as obs:
            hostile: list[tuple[str, bytes]] = [
                ("say", b"x" * (MAX_PAYLOAD_BYTES + 1)),
                ("say", b"\xff\xfe\xfd"),
                ("say", b""),
                ("ask", b"   "),
                ("mute", b"maybe"),
                ("mute", b""),
                ("say", b"a\x00b"),
                ("ask", b"\xc3\x28"),
                ("say", b"y" * 1_000_000),
            ]
            for command, payload in hostile:
                await obs.send(f"voiced/cmd/{command}", payload)
            await until(lambda: bridge.ignored == len(hostile))
            assert fake.announced == [] and fake.asked == [] and fake.calls == []
            await obs.send("voiced/cmd/say", "Dinner is ready")
            await until(lambda: fake.announced == ["Dinner is ready"])
            await obs.send("voiced/cmd/ask", "turn on the light")
            await obs.wait("voiced/cmd/reply")
            reply = json.loads(obs.payloads("voiced/cmd/reply")[0])
            assert reply == {
                "text": "turn on the light",
                "reply": "You said turn on the light.",
                "intent": "light_on",
                "slots": {"area": "kitchen"},
            }
            assert fake.asked == [("turn on the light", False)]
            for command, text in (
                ("listen", ""),
                ("stop", ""),
                ("mute", "ON"),
                ("say", "no"),
                ("mute", "off"),
            ):
                await obs.send(f"voiced/cmd/{command}", text)
            await until(lambda: len(fake.calls) == 5)
            assert fake.calls == ["listen", "stop", "mute=True", "stop", "mute=False"]
            assert fake.announced == ["Dinner is ready"], "say is ignored while muted"
        await stop(task)

    run(main())


def test_broker_restart_reconnects_and_never_blocks_the_assistant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    topics = Topics("restart")
    configs = discovery_configs(topics)

    async def main() -> None:
        fake = FakeAssistant()
        publisher = MqttPublisher()
        (light,) = load_user_intents(
            [
                {
                    "name": "light",
                    "sentences": ["light on"],
                    "mqtt": {"topic": "home/light", "payload": "ON"},
                }
            ],
            publisher=publisher,
        )
        bridge, task = await start_bridge(
            fake, mqtt_settings(broker, "restart"), publisher=publisher
        )
        work = 0

        async def assistant_work() -> None:
            nonlocal work
            while True:
                work += 1
                fake.bus.publish(Event(EventType.STT_END, {"turn_id": work, "text": "busy"}))
                await asyncio.sleep(0.005)

        worker = asyncio.create_task(assistant_work())
        try:
            broker.kill()
            await until(lambda: not bridge.connected)
            during = work
            found = light.match(normalize("light on"), None)  # type: ignore[arg-type]
            assert found is not None and found.action is not None
            await found.action()  # an intent while down: held, not blocking
            assert publisher.publish("home/x", "y")  # commands wait for the broker
            assert publisher.pending == 2
            assert not publisher.offer(Outgoing("voiced/restart/event/x", "z"))  # events drop
            await until(lambda: work > during + 20)  # the assistant went on during the outage
            await until(lambda: bridge.failed_attempts >= 4)
            broker.start()
            await until(lambda: bridge.connected)
            assert bridge.reconnects == 1
            await until(lambda: publisher.pending == 0)  # the held commands went out
            async with Observer(broker.port, "voiced/restart/#", "homeassistant/#") as obs:
                await obs.wait(topics.availability, b"online")  # republished: no persistence
                await until(lambda: all(obs.payloads(topic) for topic in configs))
                await obs.wait(topics.state)
                assert publisher.publish("home/light", "ON")
        finally:
            worker.cancel()
            await stop(task)

    try:
        with caplog.at_level(logging.INFO, logger="voiced.control.mqtt"):
            run(main())
    finally:
        broker.kill()
    assert caplog.text.count("unreachable") == 1, "an outage is logged once, not per retry"
    assert caplog.text.count("reachable again") == 1


class Harness:
    """The bridge and an observer in a background loop, for hypothesis to drive."""

    def __init__(self, broker: Broker) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeAssistant()
        self.bridge, self.task = self.run(start_bridge(self.fake, mqtt_settings(broker, "fuzz")))
        self.observer = self.run(self._observer(broker.port))
        self.sentinels = itertools.count()

    @staticmethod
    async def _observer(port: int) -> Observer:
        return await Observer(port).__aenter__()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(coro, TIMEOUT_S), self.loop
        ).result()

    def close(self) -> None:
        self.run(self.observer.__aexit__())
        self.run(stop(self.task))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def harness(broker: Broker) -> Iterator[Harness]:
    running = Harness(broker)
    yield running
    running.close()


commands = st.sampled_from(["say", "ask", "listen", "stop", "mute", "nope", "say/x"])
payloads = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.sampled_from([b"ON", b"OFF", b"on", b"", b"\x00", b"x" * (MAX_PAYLOAD_BYTES + 1)]),
    st.binary(min_size=4000, max_size=5000),
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(messages=st.lists(st.tuples(commands, payloads), min_size=1, max_size=5))
def test_fuzzed_command_payloads_never_break_the_bridge(
    harness: Harness, messages: list[tuple[str, bytes]]
) -> None:
    async def send() -> None:
        for command, payload in messages:
            await harness.observer.send(f"voiced/fuzz/{command}", payload)
        sentinel = f"sentinel {next(harness.sentinels)}"
        await harness.observer.send("voiced/fuzz/mute", "OFF")
        await harness.observer.send("voiced/fuzz/say", sentinel)
        await until(lambda: sentinel in harness.fake.announced)

    harness.run(send())
    assert harness.bridge.connected and not harness.task.done()


def test_control_plane_starts_and_stops_everything(broker: Broker) -> None:
    settings = Settings(
        http=HttpSettings(listen="127.0.0.1:0"),
        mqtt=mqtt_settings(broker, "plane"),
        hook=({"on": "transcript", "mqtt": {"topic": "home/heard", "payload": "{text}"}},),
    )

    async def main() -> None:
        fake = FakeAssistant()
        publisher = mqtt_publisher(settings)
        assert publisher is not None
        async with Observer(broker.port, "voiced/plane/availability", "home/heard") as obs:
            plane = await ControlPlane.start(fake, settings, publisher, xruns=lambda: 7)
            assert plane.http is not None and plane.bridge is not None
            await obs.wait("voiced/plane/availability", b"online")
            await until(lambda: plane.bridge is not None and plane.bridge.connected)
            fake.bus.publish(Event(EventType.STT_END, {"turn_id": 1, "text": "hello"}))
            await obs.wait("home/heard", b"hello")
            url = f"http://127.0.0.1:{plane.http.port}/metrics"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
            assert "voiced_xruns_total 7" in text and "voiced_mqtt_reconnects_total 0" in text
            await plane.close()
            await obs.wait("voiced/plane/availability", b"offline")

    run(main())
    assert mqtt_publisher(Settings()) is None


def test_cancel_and_wait_ends_a_task_that_swallowed_a_cancel() -> None:
    """Python 3.11's wait_for can lose a cancel that lands as its future completes;
    the bridge's writer then waits for its next message as if nothing happened."""
    swallowed = 0

    async def writer(queue: asyncio.Queue[str]) -> None:
        nonlocal swallowed
        while True:
            try:
                await queue.get()
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # the lost cancel: carry on waiting

    async def main() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.create_task(writer(queue))
        await asyncio.sleep(0)
        await cancel_and_wait({task})
        assert task.cancelled() and swallowed == 1

    run(main())


def test_default_device_id_tells_boards_with_one_host_name_apart(tmp_path: Path) -> None:
    """Two boards both called raspberrypi knocked each other off the broker and
    shared Home Assistant unique ids; /etc/machine-id tells them apart."""
    first, second, broken = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_text("3f2a9c1d" + "0" * 24 + "\n")
    second.write_text("77e01b2c" + "1" * 24 + "\n")
    broken.write_text("not a machine id\n")
    default = MqttSettings()
    assert device_id_for(default, "raspberrypi", first) == "raspberrypi_3f2a9c1d"
    assert device_id_for(default, "raspberrypi", second) == "raspberrypi_77e01b2c"
    assert device_id_for(default, "raspberrypi", broken) == "raspberrypi"
    assert device_id_for(MqttSettings(device_id="kitchen"), "raspberrypi", first) == "kitchen"
    assert len(device_id_for(default, "h" * 200, first)) <= 64


def test_house_and_room_announcements_reach_the_right_devices(broker: Broker) -> None:
    """voiced/house/say reaches every device; voiced/room/<area>/say only that room's;
    neither without say allowed; a retained one never plays."""

    async def main() -> None:
        kitchen, hall, locked = FakeAssistant(), FakeAssistant(), FakeAssistant()
        async with Observer(broker.port) as obs:
            # Published before the devices start: it reaches them as a retained message.
            await obs.client.publish("voiced/room/hall/say", "retained", qos=1, retain=True)
            tasks = []
            for fake, name, commands in ((kitchen, "kitchen", COMMANDS), (hall, "hall", COMMANDS),
                                         (locked, "study", ("mute", "stop"))):  # fmt: skip
                settings = dataclasses.replace(mqtt_settings(broker, name), commands=commands)
                _bridge, task = await start_bridge(fake, settings, area=name)
                tasks.append(task)
            await obs.send("voiced/house/say", "Dinner is ready.")
            await obs.send("voiced/room/kitchen/say", "The oven is hot.")
            await until(lambda: len(kitchen.announced) == 2 and len(hall.announced) == 1)
            await asyncio.sleep(0.2)
            assert kitchen.announced == ["Dinner is ready.", "The oven is hot."]
            assert hall.announced == ["Dinner is ready."], "the retained one never played"
            assert locked.announced == []
            await obs.client.publish("voiced/room/hall/say", b"", qos=1, retain=True)
        for task in tasks:
            await stop(task)

    run(main())


def test_a_house_message_with_a_huge_number_is_refused_without_a_traceback(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON integers have no size limit: a 400-digit one in a claim or result is
    refused like any bad value, not raised (a traceback in the log per message)."""
    from voiced.house.arbiter import HouseArbiter
    from voiced.settings import HouseSettings

    async def main() -> None:
        house = HouseArbiter("kitchen", HouseSettings(), lambda *m: None, lambda: True,
                             phrase="hey_jarvis")  # fmt: skip
        _bridge, task = await start_bridge(
            FakeAssistant(), mqtt_settings(broker, "kitchen"), house=house
        )
        huge = "9" * 400
        now = time.time()
        claim = ('{"device_id":"hall","wake_id":"h-1","phrase":"hey_jarvis",'
                 f'"heard_at_s":{huge},"level_db":10}}')  # fmt: skip
        result = f'{{"device_id":"hall","wake_id":"h-1","outcome":"taken","at_s":{huge}}}'
        good = json.dumps({"device_id": "hall", "wake_id": "h-2", "phrase": "hey_jarvis",
                           "heard_at_s": now, "level_db": 10.0})  # fmt: skip
        ours = house.book.claim("hey_jarvis", 0.0)
        async with Observer(broker.port) as obs:
            await obs.send("voiced/house/claim", claim)
            await obs.send("voiced/house/result", result)
            await obs.send("voiced/house/claim", good)
            await until(lambda: house.book.beaten(ours) is not None)
        await stop(task)

    with caplog.at_level(logging.WARNING):
        run(main())
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    refused = [r.getMessage() for r in caplog.records if "house" in r.getMessage()]
    assert len(refused) == 2, refused
