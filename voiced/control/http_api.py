"""The local HTTP API: status, control, an event stream and metrics (aiohttp).

Runs in the daemon's event loop. Bound to 127.0.0.1 by default; binding any
other address needs a token, and with a token every request but the static
status page needs ``Authorization: Bearer <token>`` (compared in constant
time). Without a token, a request must name the server as ``localhost``,
``127.0.0.1`` or ``[::1]`` on the bound port in its ``Host`` header (else 421):
under DNS rebinding a web page's requests carry the attacker's host name, and
same-origin GETs carry no ``Origin`` at all. Browser requests whose ``Origin``
names another site are refused too (403). Every response carries security
headers (a CSP built from the status page's own inline code, no framing, no
referrer). Every error is a JSON body; the endpoints are described in openapi.py.

``ask`` while a turn is in progress answers 409 busy rather than queueing, so a
caller never waits unboundedly; ``say`` is queued, up to 8 waiting, then 429.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from voiced.control.metrics import Metrics, stage_times_ms
from voiced.control.openapi import openapi_document
from voiced.control.readiness import ReadinessMonitor
from voiced.control.surface import MAX_SSE_CLIENTS, MAX_TEXT_CHARS, AssistantSurface, snapshot
from voiced.credentials import secret_value
from voiced.errors import ConfigError, VoicedError
from voiced.pipeline.events import Event, EventType
from voiced.pipeline.state import State
from voiced.pipeline.turn import TurnRecord
from voiced.settings import HttpSettings

_LOGGER = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 64 * 1024
SAY_QUEUE_LEN = 8
HEARTBEAT_S = 15.0
SSE_POLL_S = 0.5
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
"""The names a token-less request may give in ``Host`` (with the bound port)."""
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATIC_DIR = Path(__file__).with_name("static")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ACTIVE = (State.LISTENING, State.THINKING, State.SPEAKING)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765``, ``:8765`` for loopback) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"http.listen {value!r} must be HOST:PORT", fix='e.g. "127.0.0.1:8765"')
    return host.strip("[]") or DEFAULT_HOST, int(port_text)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not token and not is_loopback(host):
        raise ConfigError(
            f"the HTTP API would listen on {host} without a token: anyone on the network "
            "could make the assistant speak and read its transcripts",
            fix='set http.token = "<a long random string>", or listen on 127.0.0.1',
        )


class ApiError(Exception):
    """Answered as ``{"error": error, "message": message}`` with ``status``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _error(status: int, error: str, message: str = "", **headers: str) -> web.Response:
    body = {"error": error, **({"message": message} if message else {})}
    return web.json_response(body, status=status, headers=headers or None)


class HttpServer:
    """A started server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, runner: web.AppRunner, api: _Api, host: str, port: int) -> None:
        self.runner = runner
        self.api = api
        self.host = host
        self.port = port

    @property
    def metrics(self) -> Metrics:
        return self.api.metrics

    async def close(self) -> None:
        await self.api.close()
        await self.runner.cleanup()


async def start_http(
    assistant: AssistantSurface, settings: HttpSettings, *, host: str | None = None,
    port: int | None = None, metrics: Metrics | None = None,
) -> HttpServer:  # fmt: skip
    """Serve the API; host/port override ``settings.listen`` (default 127.0.0.1:8765).

    ``listen = "unix:/run/voiced/api.sock"`` serves on a Unix socket (mode 0660)
    instead: no browser can reach one, so no Host check and no token are needed.
    """
    token = http_token(settings)
    if settings.listen and settings.listen.startswith("unix:") and host is None:
        return await _start_unix(assistant, settings.listen[5:], token, metrics)
    listen_host, listen_port = parse_listen(settings.listen) if settings.listen else (None, None)
    host = host or listen_host or DEFAULT_HOST
    port = port if port is not None else listen_port if listen_port is not None else DEFAULT_PORT
    check_bind(host, token)
    api = _Api(assistant, token, metrics)
    runner = await _run(api, lambda r: web.TCPSite(r, host, port), f"{host}:{port}")
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    api.port = bound
    api.start()
    _LOGGER.info("HTTP API on http://%s:%d/", host, bound)
    return HttpServer(runner, api, host, bound)


def http_token(settings: HttpSettings) -> str | None:
    """``token``, else ``token_file``, else the ``http_token`` systemd credential."""
    return secret_value(settings.token, settings.token_file, "http.token_file", "http_token")


async def _start_unix(
    assistant: AssistantSurface, path: str, token: str | None, metrics: Metrics | None
) -> HttpServer:
    if not path.startswith("/") or "\x00" in path or len(path.encode()) > 100:
        raise ConfigError(f"http.listen unix:{path[:120]!r} needs an absolute socket path",
                          fix='e.g. "unix:/run/voiced/api.sock"')  # fmt: skip
    api = _Api(assistant, token, metrics, check_host=False)
    _remove_stale_socket(Path(path))
    runner = await _run(api, lambda r: web.UnixSite(r, path), f"unix:{path}")
    _owner_and_group_only(Path(path))
    api.start()
    _LOGGER.info("HTTP API on unix:%s", path)
    return HttpServer(runner, api, f"unix:{path}", 0)


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a killed run would make the bind fail; nothing else is removed."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()


def _owner_and_group_only(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.chmod(0o660)


async def _run(
    api: _Api, site: Callable[[web.AppRunner], web.BaseSite], where: str
) -> web.AppRunner:
    runner = web.AppRunner(api.app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await site(runner).start()
    except OSError as err:
        await runner.cleanup()
        raise ConfigError(f"the HTTP API cannot listen on {where}: {err}") from err
    return runner


class _Api:
    def __init__(
        self, assistant: AssistantSurface, token: str | None, metrics: Metrics | None,
        *, check_host: bool = True,
    ) -> None:  # fmt: skip
        self.assistant = assistant
        self.token = token
        self.loopback_only = token is None
        self.check_host = check_host and token is None
        self.started = time.monotonic()
        self.metrics = metrics or Metrics()
        if metrics is None:
            self.metrics.attach(assistant.bus, assistant.on_turn_done)
        self.readiness = ReadinessMonitor(lambda: assistant.frames_seen, self.metrics)
        self.says_waiting = 0
        self.asking = False
        self.closed = False
        self.port = 0
        """The bound port, set once listening; the only port a Host header may name."""
        self.streams = 0
        self.index_html = (STATIC_DIR / "index.html").read_bytes()
        self.headers = security_headers(self.index_html.decode("utf-8"))
        self.openapi = json.dumps(openapi_document()).encode()
        assistant.bus.add_listener(self._on_event)
        assistant.on_turn_done.append(self._on_turn)
        self.app = self._build()

    def _build(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES,
                              middlewares=[self._json_errors, self._guard])  # fmt: skip
        get, post = app.router.add_get, app.router.add_post
        get("/", self.index)
        get("/healthz", self.healthz)
        get("/readyz", self.readyz)
        get("/api/status", self.status)
        post("/api/say", self.say)
        post("/api/ask", self.ask)
        post("/api/listen", self.listen)
        post("/api/stop", self.stop)
        post("/api/mute", self.mute)
        get("/api/events", self.events, allow_head=False)  # a stream has no HEAD
        get("/metrics", self.metrics_text)
        get("/openapi.json", self.openapi_json)
        app.on_response_prepare.append(self._add_headers)
        return app

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in self.headers.items():
            response.headers.setdefault(name, value)

    def start(self) -> None:
        self.readiness.start()

    async def close(self) -> None:
        self.closed = True
        await self.readiness.close()
        if self._on_turn in self.assistant.on_turn_done:
            self.assistant.on_turn_done.remove(self._on_turn)

    # -- middlewares --------------------------------------------------------

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return _error(err.status, err.error, err.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            slug = exc.reason.lower().replace(" ", "_")
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            return _error(exc.status, slug, f"{request.method} {request.path}: {exc.reason}",
                          **allow)  # fmt: skip

    @web.middleware
    async def _guard(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if self.check_host and not host_allowed(request.headers.get("Host"), self.port):
            return _error(421, "misdirected_request", "without a token the API answers only "
                          f"to Host: localhost:{self.port} or 127.0.0.1:{self.port}")  # fmt: skip
        if self.token is not None and not (request.method == "GET" and request.path == "/"):
            header = request.headers.get("Authorization", "")
            expected = f"Bearer {self.token}".encode()
            if not hmac.compare_digest(header.encode("utf-8", "replace"), expected):
                return _error(401, "unauthorized", "send Authorization: Bearer <token>",
                              **{"WWW-Authenticate": "Bearer"})  # fmt: skip
        if self.loopback_only and not _same_origin(request):
            return _error(403, "forbidden", "cross-origin requests are refused")
        return await handler(request)

    # -- bookkeeping ----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        cancelled = event.type is EventType.STATE_CHANGED and event.data.get("trigger") == "cancel"
        if cancelled or (event.type is EventType.MUTED and event.data.get("muted")):
            self.says_waiting = 0  # stop and mute drop the announcements

    def _on_turn(self, turn: TurnRecord) -> None:
        if turn.kind == "say":
            self.says_waiting = max(0, self.says_waiting - 1)

    def _busy(self) -> bool:
        return self.asking or self.assistant.busy or self.assistant.state in _ACTIVE

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(self.assistant)

    # -- endpoints ------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.index_html, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        reason = self.readiness.problem(bool(self.assistant.engines.paths.names))
        if reason is not None:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True})

    async def status(self, request: web.Request) -> web.Response:
        turns = [{**t.to_dict(), "stages_ms": stage_times_ms(t)}
                 for t in list(self.assistant.recent_turns)]  # fmt: skip
        return web.json_response({
            **self._snapshot(), "models": dict(self.assistant.engines.paths.names),
            "uptime_s": round(time.monotonic() - self.started, 1), "turns": turns,
            "echo": self.assistant.echo_status(),
        })  # fmt: skip

    async def say(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"text"})
        text = _text(body)
        if self.assistant.state is State.MUTED:
            return _error(409, "muted", "unmute first (POST /api/mute)")
        if self.says_waiting >= SAY_QUEUE_LEN:
            return _error(429, "queue_full", f"{SAY_QUEUE_LEN} announcements already wait")
        self.assistant.announce(text)
        self.says_waiting += 1
        return web.json_response({"queued": self.says_waiting}, status=202)

    async def ask(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"text", "speak"})
        text = _text(body)
        speak = body.get("speak", False)
        if not isinstance(speak, bool):
            raise _bad_request("`speak` must be true or false")
        if speak and self.assistant.state is State.MUTED:
            return _error(409, "muted", "unmute first, or ask with speak=false")
        if self._busy():
            return _error(409, "busy", "a turn is in progress; try again when idle")
        self.asking = True
        try:
            turn = await self.assistant.ask(text, speak=speak)
        except VoicedError as err:
            return _error(503, err.code, err.message)
        finally:
            self.asking = False
        return web.json_response({"reply": turn.reply, "intent": turn.intent, "slots": turn.slots})

    async def listen(self, request: web.Request) -> web.Response:
        if self.assistant.state is State.MUTED:
            return _error(409, "muted", "unmute first (POST /api/mute)")
        if self._busy():
            return _error(409, "busy", "a turn is in progress")
        self.assistant.listen()
        return web.json_response(self._snapshot(), status=202)

    async def stop(self, request: web.Request) -> web.Response:
        self.assistant.stop()
        self.says_waiting = 0
        return web.json_response(self._snapshot())

    async def mute(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"muted"})
        muted = body.get("muted")
        if not isinstance(muted, bool):
            raise _bad_request("`muted` must be true or false")
        self.assistant.set_muted(muted)
        return web.json_response(self._snapshot())

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(),
                            headers={"Content-Type": PROMETHEUS_TYPE})  # fmt: skip

    async def openapi_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi, content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a ``state`` snapshot, then every bus event."""
        if self.streams >= MAX_SSE_CLIENTS:
            return _error(503, "too_many_streams", f"{MAX_SSE_CLIENTS} event streams are open "
                          "already; close one", **{"Retry-After": "5"})  # fmt: skip
        self.streams += 1
        try:
            return await self._stream(request)
        finally:
            self.streams -= 1

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        queue = self.assistant.bus.subscribe()
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # fmt: skip
        try:
            await response.prepare(request)
            await response.write(_sse("state", self._snapshot()))
            idle_s = 0.0
            while not self.closed and not _gone(request):
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_POLL_S)
                except TimeoutError:
                    idle_s += SSE_POLL_S
                    if idle_s >= HEARTBEAT_S:
                        await response.write(b": heartbeat\n\n")
                        idle_s = 0.0
                    continue
                await response.write(_sse(event.type.value, event.to_dict()))
                idle_s = 0.0
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.assistant.bus.unsubscribe(queue)
        return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def host_allowed(host: str | None, port: int) -> bool:
    """True for ``localhost``, ``127.0.0.1`` or ``[::1]`` with ``port`` (no port: 80)."""
    text = (host or "").strip().lower()
    if text.startswith("["):
        name, _, rest = text.partition("]")
        name += "]"
    else:
        name, _, rest = text.partition(":")
        rest = ":" + rest if rest or text.endswith(":") else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
        return False
    return name in LOOPBACK_NAMES and (int(rest[1:]) if rest else 80) == port


_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def security_headers(page: str) -> dict[str, str]:
    """Headers for every response: the page may run only its own inline script and
    style (by hash), talk only to this server, and never be framed."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(page):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    script, style = (" ".join(hashes[kind]) or "'none'" for kind in ("script", "style"))
    csp = (
        f"default-src 'none'; connect-src 'self'; img-src 'self' data:; script-src {script}; "
        f"style-src {style}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def _same_origin(request: web.Request) -> bool:
    """False for a browser request from another site (its Origin names another host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host", "")
    return origin.partition("://")[2] == host and bool(host)


def _sse(name: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, default=str)
    return f"event: {name}\ndata: {payload}\n\n".encode()


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


async def _json_object(request: web.Request, keys: set[str]) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise _bad_request("the body must be a JSON object") from err
    if not isinstance(data, dict):
        raise _bad_request("the body must be a JSON object")
    unknown = sorted(set(data) - keys)
    if unknown:
        raise _bad_request(f"unknown key `{unknown[0]}`; expected {', '.join(sorted(keys))}")
    return data


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise _bad_request("`text` must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(413, "too_long", f"`text` is longer than {MAX_TEXT_CHARS} characters")
    return text.strip()
