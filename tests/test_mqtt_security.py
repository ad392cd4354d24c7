"""The MQTT bridge as an attacker on the broker sees it (issue 13), on real mosquittos.

* retained commands are never run (they would be replayed on every reconnect);
* only the commands in ``[mqtt] commands`` are taken (default: mute and stop,
  enough for Home Assistant's mute switch);
* a locked-down broker: ``allow_anonymous false``, a password file made with
  mosquitto_passwd, an ACL, and TLS with a CA generated here with openssl. The
  bridge logs in with a password read from a file (or a systemd credential).
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from tests.test_http_api import FakeAssistant
from tests.test_mqtt import (
    MOSQUITTO,
    TIMEOUT_S,
    Broker,
    broker,  # noqa: F401 (a fixture used here)
    free_port,
    mqtt_settings,
    run,
    start_bridge,
    stop,
    until,
)
from voiced.control.discovery import Topics, discovery_configs
from voiced.control.mqtt import MqttBridge
from voiced.errors import ConfigError
from voiced.pipeline.events import Event, EventType
from voiced.settings import MqttSettings

OPENSSL = shutil.which("openssl")
PASSWD = shutil.which("mosquitto_passwd")
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or OPENSSL is None or PASSWD is None,
    reason="needs mosquitto, mosquitto_passwd and openssl (apt-get install mosquitto openssl)",
)
_ids = itertools.count()


async def publish(port: int, topic: str, payload: str, *, retain: bool = False,
                  **login: object) -> None:  # fmt: skip
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"pub-{next(_ids)}",
                              **login) as client:  # type: ignore[arg-type]  # fmt: skip
        await client.publish(topic, payload, qos=1, retain=retain)


def test_retained_commands_are_never_run(broker: Broker) -> None:  # noqa: F811
    settings = mqtt_settings(broker, "ret")

    async def main() -> None:
        await publish(broker.port, "voiced/ret/say", "replayed at every connect", retain=True)
        await publish(broker.port, "voiced/ret/mute", "OFF", retain=True)
        await publish(broker.port, "voiced/ret/ask", "open the garage door", retain=True)
        fake = FakeAssistant()
        bridge, task = await start_bridge(fake, settings)
        try:
            await publish(broker.port, "voiced/ret/say", "live")
            await until(lambda: "live" in fake.announced)
            await until(lambda: bridge.ignored >= 3)
            assert fake.announced == ["live"]
            assert fake.asked == [] and fake.calls == []
        finally:
            await stop(task)
            for command in ("say", "mute", "ask"):  # clear them for later tests
                await publish(broker.port, f"voiced/ret/{command}", "", retain=True)

    run(main())


def test_default_commands_are_mute_and_stop_only(broker: Broker) -> None:  # noqa: F811
    settings = MqttSettings(host="127.0.0.1", port=broker.port, device_id="safe")
    assert settings.commands == ("mute", "stop")

    async def main() -> None:
        fake = FakeAssistant()
        bridge, task = await start_bridge(fake, settings)
        try:
            for command, payload in (("ask", "open the garage door"), ("say", "hello"),
                                     ("listen", ""), ("mute", "ON")):  # fmt: skip
                await publish(broker.port, f"voiced/safe/{command}", payload)
            await until(lambda: "mute=True" in fake.calls)
            await publish(broker.port, "voiced/safe/stop", "")
            await until(lambda: fake.calls.count("stop") >= 2)  # mute stops, then stop
            assert fake.asked == [] and fake.announced == [] and "listen" not in fake.calls
        finally:
            await stop(task)
        configs = discovery_configs(bridge.topics)
        kinds = {topic.split("/")[1] for topic in configs}
        assert kinds == {"sensor", "switch"}, "no Say entity when say is not allowed"
        assert len(discovery_configs(Topics("x", commands=("mute", "stop", "say")))) == 4

    run(main())


# -- a locked-down broker ------------------------------------------------------------


@dataclass
class SecureBroker:
    port: int
    ca_file: Path
    folder: Path
    process: subprocess.Popen[bytes]

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=voiced test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
             cwd=folder)  # fmt: skip


ACL = """\
# voiced: its own topics and Home Assistant discovery; nothing else.
user voiced
topic readwrite voiced/secure/#
topic write homeassistant/+/voiced_secure/+/config
topic read homeassistant/status

# Home Assistant: reads voiced's state, may send its commands.
user ha
topic read voiced/secure/#
topic write voiced/secure/mute
topic write voiced/secure/stop

# A guest on the broker may watch the state, never command.
user guest
topic read voiced/secure/state
"""


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    assert MOSQUITTO is not None and PASSWD is not None
    folder = tmp_path_factory.mktemp("secure-mosquitto")
    make_certificates(folder)
    passwords = folder / "passwd"
    for index, (user, password) in enumerate(
        (("voiced", "voiced-pw"), ("ha", "ha-pw"), ("guest", "guest-pw"))
    ):
        flags = ["-c"] if index == 0 else []
        subprocess.run([PASSWD, *flags, "-b", str(passwords), user, password],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    (folder / "acl").write_text(ACL)
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"acl_file {folder / 'acl'}\ncafile {folder / 'ca.pem'}\n"
        f"certfile {folder / 'server.pem'}\nkeyfile {folder / 'server.key'}\n"
        "persistence false\nlog_type none\n"
        # Run as root, mosquitto would switch to user mosquitto, who cannot read the key.
        f"user {getpass.getuser()}\n"
    )
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    ready = False
    while not ready and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            ready = True
        except OSError:
            time.sleep(0.02)
    assert ready, "mosquitto did not start"
    yield SecureBroker(port, folder / "ca.pem", folder, process)
    process.kill()
    process.wait(TIMEOUT_S)


def secure_settings(secure: SecureBroker, **changes: object) -> MqttSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1", "port": secure.port, "device_id": "secure", "username": "voiced",
        "tls": True, "ca_file": str(secure.ca_file),
    }  # fmt: skip
    values.update(changes)
    return MqttSettings(**values)  # type: ignore[arg-type]


async def client_publish(secure: SecureBroker, user: str, topic: str, payload: str) -> None:
    await publish(secure.port, topic, payload, username=user, password=f"{user}-pw",
                  tls_context=secure.tls())  # fmt: skip


async def connects(bridge: MqttBridge, attempts: int) -> bool:
    """True once connected; False after ``attempts`` failed connection attempts."""
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: bridge.connected or bridge.failed_attempts >= attempts)
        return bridge.connected
    finally:
        await stop(task)


def test_bridge_logs_in_over_tls_with_a_password_file_and_the_acl_holds(
    secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("voiced-pw\n")
    secret.chmod(0o600)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    def bridge(fake: FakeAssistant, **changes: object) -> MqttBridge:
        return MqttBridge(fake, secure_settings(secure_broker, **changes),
                          backoff_initial_s=0.05, backoff_max_s=0.2)  # fmt: skip

    async def main() -> None:
        fake = FakeAssistant()
        assert not await connects(bridge(fake, username=None), 2), "anonymous is refused"
        assert not await connects(bridge(fake, password="wrong"), 2), "a wrong password too"
        assert not await connects(bridge(fake, password_file=str(secret), ca_file=None), 2), (
            "an unknown CA is refused"
        )
        good = bridge(fake, password_file=str(secret))
        task = asyncio.create_task(good.run())
        try:
            await until(lambda: good.connected)
            await client_publish(secure_broker, "guest", "voiced/secure/mute", "ON")  # denied
            await client_publish(secure_broker, "ha", "voiced/secure/stop", "")
            await until(lambda: "stop" in fake.calls)
            assert "mute=True" not in fake.calls, "the ACL kept the guest out"
            await client_publish(secure_broker, "ha", "voiced/secure/mute", "ON")
            await until(lambda: "mute=True" in fake.calls)
        finally:
            await stop(task)

    run(main())


def test_password_from_a_systemd_credential(
    secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt_password").write_text("voiced-pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    fake = FakeAssistant()
    implicit = MqttBridge(fake, secure_settings(secure_broker), backoff_initial_s=0.05)
    assert implicit.password == "voiced-pw", "the conventional credential name"
    assert run(connects(implicit, 3))
    named = MqttBridge(fake, secure_settings(secure_broker, password_file="mqtt_password"))
    assert named.password == "voiced-pw"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="mqtt.password_file"):
        MqttBridge(fake, secure_settings(secure_broker, password_file="mqtt_password"))



def test_transcripts_can_be_kept_off_the_broker(broker: Broker) -> None:  # noqa: F811
    settings = MqttSettings(host="127.0.0.1", port=broker.port, device_id="quiet",
                            transcripts=False)  # fmt: skip

    async def main() -> None:
        fake = FakeAssistant()
        bridge, task = await start_bridge(fake, settings)
        seen: list[str] = []
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="spy") as spy:
                await spy.subscribe("voiced/quiet/event/#", qos=1)

                async def read() -> None:
                    async for message in spy.messages:
                        seen.append(message.topic.value)

                reader = asyncio.create_task(read())
                fake.bus.publish(Event(EventType.STT_END, {"turn_id": 1, "text": "my pin is 1234"}))
                fake.bus.publish(Event(EventType.INTENT_END, {"turn_id": 1, "reply": "ok",
                                                              "intent": "pin"}))  # fmt: skip
                fake.bus.publish(Event(EventType.WAKE_WORD_END, {"turn_id": 2}))
                await until(lambda: "voiced/quiet/event/wake" in seen)
                reader.cancel()
        finally:
            await stop(task)
        assert seen == ["voiced/quiet/event/wake"], seen
        objects = {topic.split("/")[3] for topic in discovery_configs(bridge.topics)}
        assert objects == {"state", "mute"}, "no Last transcript sensor"

    run(main())
