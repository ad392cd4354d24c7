"""The HTTP API against a fake assistant: a real aiohttp server on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from voiced.control.http_api import (
    MAX_SSE_CLIENTS,
    STATIC_DIR,
    HttpServer,
    http_token,
    parse_listen,
    security_headers,
    start_http,
)
from voiced.control.openapi import openapi_document
from voiced.errors import ConfigError, EngineError
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.pipeline.state import State, StateMachine, Trigger
from voiced.pipeline.turn import TurnRecord
from voiced.settings import HttpSettings

TIMEOUT_S = 20.0
TOKEN = "s3cret-token"


class FakeAssistant:
    """The control surface of voiced.pipeline.assistant.Assistant, without audio."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.machine = StateMachine()
        self.recent_turns: deque[TurnRecord] = deque(maxlen=20)
        self.frames_seen = 0
        self.volume = 0.8
        self.engines = SimpleNamespace(paths=SimpleNamespace(names={"asr": "whisper-tiny.en"}))
        self.on_turn_done: list[Callable[[TurnRecord], None]] = []
        self.announced: list[str] = []
        self.asked: list[tuple[str, bool]] = []
        self.calls: list[str] = []
        self.hold_ask: asyncio.Event | None = None
        self.fail_ask = False
        self._next_id = 1

    @property
    def state(self) -> State:
        return self.machine.state

    def echo_status(self) -> dict[str, object]:
        return {"canceller": "none", "reason": "echo_cancel = off"}

    @property
    def busy(self) -> bool:
        return self.machine.state in (State.THINKING, State.SPEAKING)

    def _fire(self, trigger: Trigger) -> None:
        before = self.machine.state
        if self.machine.fire(trigger):
            data = {"state": self.state.value, "previous": before.value, "trigger": trigger.value}
            self.bus.publish(Event(EventType.STATE_CHANGED, data))

    def announce(self, text: str) -> None:
        self.announced.append(text)

    async def ask(self, text: str, *, speak: bool) -> TurnRecord:
        self.asked.append((text, speak))
        if self.hold_ask is not None:
            await self.hold_ask.wait()
        if self.fail_ask:
            raise EngineError("the language model failed")
        turn = TurnRecord(self._next_id, kind="text", transcript=text, reply=f"You said {text}.")
        self._next_id += 1
        if "light" in text:
            turn.intent, turn.slots = "light_on", {"area": "kitchen"}
        turn.asr_done_ms, turn.first_token_ms, turn.first_audio_ms = 0.0, 40.0, 90.0
        turn.done_ms, turn.outcome = 700.0, "answered"
        self.bus.publish(
            Event(
                EventType.INTENT_END,
                {
                    "turn_id": turn.turn_id,
                    "reply": turn.reply,
                    "intent": turn.intent,
                    "slots": turn.slots,
                },
            )
        )
        self.finish(turn)
        return turn

    def finish(self, turn: TurnRecord) -> None:
        self.recent_turns.append(turn)
        for callback in self.on_turn_done:
            callback(turn)

    def listen(self) -> None:
        self.calls.append("listen")
        self._fire(Trigger.WAKE)

    def stop(self) -> None:
        self.calls.append("stop")
        self._fire(Trigger.CANCEL)

    def set_muted(self, muted: bool) -> None:
        self.calls.append(f"mute={muted}")
        if muted:
            self.stop()
        self._fire(Trigger.MUTE if muted else Trigger.UNMUTE)
        self.bus.publish(Event(EventType.MUTED, {"muted": muted}))


Scenario = Callable[[FakeAssistant, HttpServer, aiohttp.ClientSession], Awaitable[None]]


def serve(
    scenario: Scenario, *, token: str | None = None, assistant: FakeAssistant | None = None
) -> None:
    """Start a server on a free loopback port, run ``scenario``, close everything."""

    async def main() -> None:
        fake = assistant or FakeAssistant()
        server = await start_http(fake, HttpSettings(token=token), host="127.0.0.1", port=0)
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as session:
                await scenario(fake, server, session)
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))


async def call(
    session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, path, **kwargs) as response:
        raw = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, json.loads(raw) if is_json else raw.decode()


def test_health_status_metrics_and_page() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        assert server.port > 0
        assert await call(session, "GET", "/healthz") == (200, {"status": "ok"})
        status, body = await call(session, "GET", "/api/status")
        assert status == 200
        assert body["state"] == "idle" and body["muted"] is False
        assert body["models"] == {"asr": "whisper-tiny.en"} and body["volume"] == 0.8
        assert body["turns"] == [] and body["uptime_s"] >= 0
        assert body["echo"] == {"canceller": "none", "reason": "echo_cancel = off"}
        await call(session, "POST", "/api/ask", json={"text": "turn on the light"})
        _, body = await call(session, "GET", "/api/status")
        assert body["turns"][0]["intent"] == "light_on"
        assert body["turns"][0]["stages_ms"] == {"first_token": 40.0, "speaking": 610.0}
        status, text = await call(session, "GET", "/metrics")
        assert status == 200
        assert 'voiced_turns_total{outcome="answered"} 1' in text
        assert 'voiced_stage_duration_seconds_bucket{stage="first_token",le="0.05"} 1' in text
        assert "voiced_response_latency_seconds_count 0" in text
        for name in ("wake_detections", "xruns", "mic_reconnects", "mqtt_reconnects"):
            assert f"voiced_{name}_total 0" in text
        status, html = await call(session, "GET", "/")
        assert status == 200 and "/api/events" in html

    serve(scenario)


def test_readyz_needs_models_and_advancing_frames() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        status, body = await call(session, "GET", "/readyz")
        assert status == 503 and "frames" in body["reason"]

        async def feed() -> None:
            while True:
                fake.frames_seen += 1
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(feed())
        try:
            while (await call(session, "GET", "/readyz"))[0] != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            fake.engines.paths.names = {}
            status, body = await call(session, "GET", "/readyz")
            assert status == 503 and "models" in body["reason"]
        finally:
            feeder.cancel()

    serve(scenario)


def test_say_ask_listen_stop_mute() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        assert await call(session, "POST", "/api/say", json={"text": "Hello"}) == (
            202,
            {"queued": 1},
        )
        assert fake.announced == ["Hello"]
        status, body = await call(session, "POST", "/api/ask", json={"text": "hi", "speak": False})
        assert (status, body) == (200, {"reply": "You said hi.", "intent": None, "slots": {}})
        assert fake.asked == [("hi", False)]
        status, body = await call(session, "POST", "/api/listen")
        assert status == 202 and body["state"] == "listening"
        status, body = await call(session, "POST", "/api/stop")
        assert status == 200 and body["state"] == "idle"
        status, body = await call(session, "POST", "/api/mute", json={"muted": True})
        assert status == 200 and body["muted"] is True and body["state"] == "muted"
        status, body = await call(session, "POST", "/api/mute", json={"muted": False})
        assert body["muted"] is False
        assert fake.calls == ["listen", "stop", "mute=True", "stop", "mute=False"]

    serve(scenario)


def test_conflicts_and_queue_limits() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        await call(session, "POST", "/api/mute", json={"muted": True})
        assert await call(session, "POST", "/api/say", json={"text": "x"}) == (
            409,
            {"error": "muted", "message": "unmute first (POST /api/mute)"},
        )
        status, body = await call(session, "POST", "/api/ask", json={"text": "x", "speak": True})
        assert status == 409 and body["error"] == "muted"
        assert (await call(session, "POST", "/api/listen"))[1]["error"] == "muted"
        status, _ = await call(session, "POST", "/api/ask", json={"text": "x", "speak": False})
        assert status == 200  # a silent ask works while muted
        await call(session, "POST", "/api/mute", json={"muted": False})
        fake.hold_ask = asyncio.Event()
        first = asyncio.create_task(call(session, "POST", "/api/ask", json={"text": "slow"}))
        await until(lambda: len(fake.asked) == 2)
        status, body = await call(session, "POST", "/api/ask", json={"text": "again"})
        assert (status, body["error"]) == (409, "busy")
        fake.hold_ask.set()
        assert (await first)[0] == 200
        fake.hold_ask = None
        for number in range(8):
            assert (await call(session, "POST", "/api/say", json={"text": f"n{number}"}))[0] == 202
        status, body = await call(session, "POST", "/api/say", json={"text": "one too many"})
        assert (status, body["error"]) == (429, "queue_full")
        fake.finish(TurnRecord(99, kind="say", outcome="answered"))  # one was spoken
        assert (await call(session, "POST", "/api/say", json={"text": "fits again"}))[0] == 202
        fake.fail_ask = True
        status, body = await call(session, "POST", "/api/ask", json={"text": "boom"})
        assert (status, body["error"]) == (503, "engine")

    serve(scenario)


def test_bad_input_answers_json_errors() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("POST", "/api/say", {"data": b"{not json"}, 400),
            ("POST", "/api/say", {"data": b"\xff\xfe\x00garbage"}, 400),
            ("POST", "/api/say", {"json": ["text"]}, 400),
            ("POST", "/api/say", {"json": {"text": 5}}, 400),
            ("POST", "/api/say", {"json": {"text": "   "}}, 400),
            ("POST", "/api/say", {"json": {"text": "hi", "extra": 1}}, 400),
            ("POST", "/api/say", {"data": b"[" * 60000}, 400),
            ("POST", "/api/ask", {"json": {"text": "hi", "speak": "yes"}}, 400),
            ("POST", "/api/mute", {"json": {"muted": "true"}}, 400),
            ("POST", "/api/mute", {}, 400),
            ("POST", "/api/say", {"json": {"text": "x" * 2001}}, 413),
            ("POST", "/api/say", {"data": b"x" * (65 * 1024)}, 413),
            ("GET", "/nope", {}, 404),
            ("GET", "/api/say", {}, 405),
            ("DELETE", "/api/status", {}, 405),
        ]
        for method, path, kwargs, expected in cases:
            status, body = await call(session, method, path, **kwargs)
            assert status == expected, (method, path, kwargs, body)
            assert isinstance(body, dict) and isinstance(body["error"], str), body
        assert fake.announced == []

    serve(scenario)


def test_token_is_required_when_set() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer s3cret-tokén"},
        ):
            status, body = await call(session, "GET", "/api/status", headers=headers)
            assert (status, body["error"]) == (401, "unauthorized")
        assert (await call(session, "GET", "/nope"))[0] == 401  # no hints without the token
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await call(session, "GET", "/api/status", headers=good))[0] == 200
        assert (await call(session, "POST", "/api/say", headers=good, json={"text": "a"}))[0] == 202
        assert (await call(session, "GET", "/"))[0] == 200  # the page asks for the token itself

    serve(scenario, token=TOKEN)


def test_non_loopback_bind_needs_a_token() -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="without a token"):
            await start_http(FakeAssistant(), HttpSettings(), host="0.0.0.0", port=0)
        with pytest.raises(ConfigError, match="without a token"):
            await start_http(FakeAssistant(), HttpSettings(listen="192.168.1.5:8765"))
        server = await start_http(
            FakeAssistant(), HttpSettings(token=TOKEN), host="0.0.0.0", port=0
        )
        await server.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(ConfigError):
        parse_listen("localhost")


def test_cross_origin_browser_requests_are_refused_without_token() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        evil = {"Origin": "http://evil.example"}
        status, body = await call(session, "POST", "/api/say", json={"text": "hi"}, headers=evil)
        assert (status, body["error"]) == (403, "forbidden")
        same = {"Origin": f"http://127.0.0.1:{server.port}"}
        assert (await call(session, "POST", "/api/say", json={"text": "hi"}, headers=same))[
            0
        ] == 202

    serve(scenario)


def test_event_stream_sends_snapshot_then_events_and_unsubscribes() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        async with session.get("/api/events") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            name, data = await read_sse(response)
            assert name == "state" and data["state"] == "idle"
            fake.listen()
            name, data = await read_sse(response)
            assert name == "state-changed" and data["data"]["state"] == "listening"
            assert len(fake.bus._queues) == 1
        await until(lambda: not fake.bus._queues)  # the handler notices the client left

    serve(scenario)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (the condition is the server's work)
        await asyncio.sleep(0.01)


async def read_sse(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    name, data = "", ""
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            return name, json.loads(data)


def test_openapi_document_lists_every_route() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        status, document = await call(session, "GET", "/openapi.json")
        assert status == 200 and document == json.loads(json.dumps(openapi_document()))
        assert document["openapi"].startswith("3.1")
        routes = {
            (route.resource.canonical, route.method.lower())
            for route in server.api.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
        documented = {(path, method) for path, item in document["paths"].items() for method in item}
        assert routes == documented
        for path, item in document["paths"].items():
            for method, operation in item.items():
                assert operation["responses"], (path, method)

    serve(scenario)


# -- the control plane as an attacker on the LAN sees it (issue 13) -------------


def test_dns_rebinding_host_is_refused_without_a_token() -> None:
    """Under DNS rebinding the browser sends the attacker's name in Host and, on a
    same-origin GET, no Origin: the Host header alone must refuse it."""

    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        port = server.port
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}",
                     f"127.0.0.1.nip.io:{port}", f"localhost.:{port}", "", f"[::1]:{port}x",
                     f"evil@127.0.0.1:{port}", "x" * 5000):  # fmt: skip
            for method, path in (("GET", "/api/status"), ("GET", "/api/events"),
                                 ("POST", "/api/say"), ("GET", "/")):  # fmt: skip
                status, body = await call(session, method, path, headers={"Host": host},
                                          json={"text": "open the garage"})  # fmt: skip
                assert status == 421, (host, path)
                assert body["error"] == "misdirected_request"
        assert fake.announced == [] and not fake.bus._queues
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                     f"LOCALHOST:{port}"):  # fmt: skip
            status, _ = await call(session, "GET", "/api/status", headers={"Host": host})
            assert status == 200, host

    serve(scenario)


def test_a_token_server_answers_any_host_but_only_with_the_token() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        rebound = {"Host": f"attacker.example:{server.port}"}
        assert (await call(session, "GET", "/api/status", headers=rebound))[0] == 401
        auth = {**rebound, "Authorization": f"Bearer {TOKEN}"}
        assert (await call(session, "GET", "/api/status", headers=auth))[0] == 200

    serve(scenario, token=TOKEN)


def test_every_response_carries_security_headers() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        for method, path in (("GET", "/"), ("GET", "/api/status"), ("POST", "/api/say"),
                             ("GET", "/nope"), ("GET", "/metrics")):  # fmt: skip
            async with session.request(method, path, data=b"{") as response:
                headers = response.headers
                csp = headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
                assert headers["X-Frame-Options"] == "DENY"
                assert headers["Referrer-Policy"] == "no-referrer"
                assert headers["X-Content-Type-Options"] == "nosniff"
        async with session.get("/api/events") as response:
            assert response.headers["X-Frame-Options"] == "DENY"
        page = (STATIC_DIR / "index.html").read_text()
        csp = security_headers(page)["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and csp.count("'sha256-") == 2

    serve(scenario)


def test_event_streams_are_capped() -> None:
    async def scenario(
        fake: FakeAssistant, server: HttpServer, session: aiohttp.ClientSession
    ) -> None:
        streams = [await session.get("/api/events") for _ in range(MAX_SSE_CLIENTS)]
        try:
            for response in streams:
                assert response.status == 200
                await read_sse(response)  # the snapshot: the stream is open
            status, body = await call(session, "GET", "/api/events")
            assert (status, body["error"]) == (503, "too_many_streams")
            assert len(fake.bus._queues) == MAX_SSE_CLIENTS
        finally:
            for response in streams:
                response.close()
        await until(lambda: server.api.streams == 0)
        async with session.get("/api/events") as response:
            assert response.status == 200  # a closed stream frees its place

    serve(scenario)


def test_token_from_a_file_or_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "http_token"
    secret.write_text("from-a-file\n")
    secret.chmod(0o600)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert http_token(HttpSettings(token_file=str(secret))) == "from-a-file"
    assert http_token(HttpSettings()) is None
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        http_token(HttpSettings(token_file="http_token"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert http_token(HttpSettings(token_file="http_token")) == "from-a-file"
    assert http_token(HttpSettings()) == "from-a-file", "the conventional credential"
    secret.write_text("")  # SetCredential=http_token: in the unit: no token
    assert http_token(HttpSettings()) is None
    for bad, problem in ((b"a\nb", "one line"), (b"\xff", "UTF-8"), (b"x" * 5000, "larger")):
        secret.write_bytes(bad)
        with pytest.raises(ConfigError, match=problem):
            http_token(HttpSettings(token_file=str(secret)))
    for name in ("../http_token", "sub/x", "relative/path"):
        with pytest.raises(ConfigError, match="absolute path or a credential name"):
            http_token(HttpSettings(token_file=name))
    with pytest.raises(ConfigError, match="cannot read"):
        http_token(HttpSettings(token_file=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="not a regular file"):
        http_token(HttpSettings(token_file=str(tmp_path)))
    secret.write_text("filed-token")

    async def main() -> None:
        server = await start_http(FakeAssistant(), HttpSettings(token_file=str(secret)),
                                  host="0.0.0.0", port=0)  # fmt: skip
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as session:
                assert (await call(session, "GET", "/api/status"))[0] == 401
                auth = {"Authorization": "Bearer filed-token"}
                assert (await call(session, "GET", "/api/status", headers=auth))[0] == 200
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))


def test_unix_socket_listening(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"

    async def main() -> None:
        fake = FakeAssistant()
        server = await start_http(fake, HttpSettings(listen=f"unix:{path}"))
        try:
            assert path.is_socket() and path.stat().st_mode & 0o777 == 0o660
            connector = aiohttp.UnixConnector(path=str(path))
            async with aiohttp.ClientSession("http://voiced", connector=connector) as session:
                assert (await call(session, "GET", "/api/status"))[0] == 200
                status, _ = await call(session, "POST", "/api/say", json={"text": "hello"})
                assert status == 202 and fake.announced == ["hello"]
        finally:
            await server.close()
        again = await start_http(fake, HttpSettings(listen=f"unix:{path}"))  # a stale socket
        await again.close()
        with pytest.raises(ConfigError, match="absolute socket path"):
            await start_http(fake, HttpSettings(listen="unix:relative.sock"))

    asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))
