"""Fuzzing the live daemon with tools nobody here wrote (issue 13).

A real ``voiced run`` (real models, null audio in and out, a real mosquitto) is
driven by schemathesis from its own /openapi.json, and hostile MQTT payloads
(huge, binary, malformed UTF-8, retained, on every command topic) are published
at its bridge. Zero 5xx, no crash, and the voice path keeps answering: /readyz
stays 200 and "What time is it?" is still answered by the time intent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)

from tests.daemon_process import spawn_daemon
from tests.test_mqtt import MOSQUITTO, Broker, free_port

START_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0
STATUSES: Counter[int] = Counter()
pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed"),
]


@dataclass
class Daemon:
    port: int
    broker: Broker
    process: subprocess.Popen[str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=CALL_TIMEOUT_S) as r:  # noqa: S310
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def ask(self, text: str) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.url + "/api/ask", data=json.dumps({"text": text}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        for _ in range(300):  # a fuzzed listen may leave a turn running for a while
            try:
                with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as r:  # noqa: S310
                    body: dict[str, Any] = json.loads(r.read())
                    return body
            except urllib.error.HTTPError as err:
                if err.code != 409:
                    raise
            self.unmute_and_stop()
            time.sleep(0.1)
        raise AssertionError("the assistant stayed busy")

    def unmute_and_stop(self) -> None:
        for path, body in (("/api/mute", b'{"muted": false}'), ("/api/stop", b"")):
            request = urllib.request.Request(self.url + path, data=body, method="POST")  # noqa: S310
            with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S):  # noqa: S310
                pass

    def alive(self) -> None:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        assert self.get("/readyz")[0] == 200, "the voice path stopped"
        assert "Traceback" not in self.log.read_text()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("live")
    broker = Broker(folder)
    broker.start()
    port = free_port()
    config = folder / "voiced.toml"
    config.write_text(
        f'[slm]\nenabled = false\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ndevice_id = "live"\n'
        'commands = ["say", "ask", "listen", "stop", "mute"]\n'
    )
    log = folder / "daemon.log"
    process = spawn_daemon(config, models_dir, log, log_level="WARNING")
    running = Daemon(port, broker, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while running.get("/readyz")[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(CALL_TIMEOUT_S)
        broker.kill()
    assert process.returncode == 0, log.read_text()[-3000:]


FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip


def test_schemathesis_finds_no_server_error(daemon: Daemon) -> None:
    """Cases for every operation but the endless event stream, valid and invalid
    ones (schemathesis' positive and negative modes), with its own checks."""
    schema = schemathesis.openapi.from_url(daemon.url + "/openapi.json").exclude(
        path="/api/events"
    )
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

    @FUZZ
    @given(case=st.one_of([schema.as_strategy(generation_mode=mode) for mode in modes]))
    def fuzz(case: Any) -> None:
        response = case.call(timeout=CALL_TIMEOUT_S)
        STATUSES[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance])  # fmt: skip

    fuzz()
    daemon.alive()


HOSTILE: list[tuple[bytes, bool]] = [
    (b"x" * 300_000, False),  # over the bridge's 4 KiB cap
    (bytes(range(256)) * 8, False),  # binary
    (b"\xff\xfe\xfd malformed \xc3\x28 utf-8", False),
    (b"\xed\xa0\x80 surrogate", False),
    (b"", False),
    (b"\x00" * 64, False),
    (b"ON\x00OFF", False),
    ("\u202e\u0000\ufeff".encode(), False),
    (b"open the garage door", True),  # retained: never run
    (b'{"text": "nested"}' * 200, False),
]


def test_hostile_mqtt_payloads_and_schemathesis_leave_the_voice_path_answering(
    daemon: Daemon,
) -> None:
    async def publish_all() -> int:
        sent = 0
        async with aiomqtt.Client("127.0.0.1", daemon.broker.port, identifier="hostile") as c:
            for command in ("say", "ask", "listen", "stop", "mute", "nope", "ask/x", ""):
                for payload, retain in HOSTILE:
                    await c.publish(f"voiced/live/{command}", payload, qos=1, retain=retain)
                    sent += 1
            for command in ("say", "ask"):  # clear the retained ones
                await c.publish(f"voiced/live/{command}", b"", qos=1, retain=True)
        return sent

    sent = asyncio.run(asyncio.wait_for(publish_all(), CALL_TIMEOUT_S))
    daemon.alive()
    reply = daemon.ask("What time is it?")
    assert reply["intent"] == "time", reply
    daemon.alive()
    assert STATUSES and not any(code >= 500 for code in STATUSES), STATUSES
    total = sum(STATUSES.values())
    print(f"\nschemathesis: {total} requests, statuses {dict(sorted(STATUSES.items()))}; "
          f"MQTT: {sent} hostile messages")  # fmt: skip
