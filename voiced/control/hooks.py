"""Event hooks from the ``[[hook]]`` tables: run a command, call a webhook, publish.

    [[hook]]
    on = "transcript"   # an event type ("stt-end") or wake, transcript, reply, intent, error
    command = ["logger", "-t", "voiced", "heard: {text}"]
    timeout_s = 10

Exactly one of ``command`` (an argv list, never run through a shell; event
fields fill ``{field}`` and arrive as ``VOICED_EVENT`` and ``VOICED_<FIELD>``
environment variables), ``webhook = { url, method }`` (the event as the JSON
body) or ``mqtt = { topic, payload }`` (payload default: the event as JSON).

A command gets a minimal environment (PATH, HOME, locale, the session bus: see
HOOK_ENV) and the VOICED_ variables, never the daemon's own (NOTIFY_SOCKET would
let it tell systemd the daemon is ready or alive; CREDENTIALS_DIRECTORY names
its secrets). A spoken word cannot become an option: an argument that *starts*
with a field (``"{text}"``) and is not after ``--`` refuses a value starting
with ``-`` ("--help", "-rf"); write ``"heard: {text}"`` or put ``"--"`` first.

Hooks run as background tasks: each hook one run at a time, with at most
PER_HOOK_WAITING more waiting (then dropped), so one slow hook never holds up
the others; a failing, crashing or hanging hook (its whole process group is
killed at ``timeout_s``) is logged, rate limited, and never holds up the voice
path: the runner reads the bus through its own bounded queue, which drops the
oldest events when hooks fall behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voiced.intents.template import fill
from voiced.pipeline.events import Event, EventBus, EventType
from voiced.ratelimit import RateLimitedLog
from voiced.user_tables import Publisher, TableError, topic_value

_LOGGER = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 3600.0
PER_HOOK_WAITING = 4
"""Runs of one hook that may wait while it is still running; more are dropped."""
MAX_PENDING = 32
HOOK_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "XDG_RUNTIME_DIR",
            "DBUS_SESSION_BUS_ADDRESS")  # fmt: skip
"""The daemon's environment variables a command hook inherits (the rest stay private)."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL_BYTES = 1024
ALIASES: dict[str, EventType] = {
    "wake": EventType.WAKE_WORD_END,
    "transcript": EventType.STT_END,
    "reply": EventType.INTENT_END,
    "intent": EventType.INTENT_END,
    "error": EventType.ERROR,
    "word": EventType.WORD_HEARD,
}
"""Short names for the events people hook most; "intent" fires only when one matched;
"word" is a [[wake.words]] word (stop, or one that only tells: action event)."""
HOOK_KEYS = frozenset({"name", "on", "command", "webhook", "mqtt", "timeout_s"})
_ENV_NAME = re.compile(r"[^A-Z0-9_]")


def short_names(event: Event) -> list[str]:
    """The short names (wake, transcript, reply, intent, error, word) ``event`` goes by."""
    names = [alias for alias, kind in ALIASES.items() if kind is event.type]
    if "intent" in names and not event.data.get("intent"):
        names.remove("intent")
    return names


def event_fields(event: Event) -> dict[str, str]:
    """The event's data as strings (nested values as JSON), plus ``event``."""
    fields = {"event": event.type.value}
    for key, value in event.data.items():
        if isinstance(value, str):
            text = value
        elif value is None:
            text = ""
        else:
            text = json.dumps(value, ensure_ascii=False, default=str)
        fields[str(key)] = text.replace("\x00", "")
    return fields


def event_env(event: Event, fields: Mapping[str, str]) -> dict[str, str]:
    env = {f"VOICED_{_ENV_NAME.sub('_', key.upper())}": value for key, value in fields.items()}
    env["VOICED_EVENT"] = event.type.value
    env["VOICED_EVENT_JSON"] = json.dumps(event.to_dict(), ensure_ascii=False, default=str)
    return env


@dataclass(frozen=True, slots=True)
class Hook:
    index: int
    on: str
    event_type: EventType
    command: tuple[str, ...] | None = None
    webhook: tuple[str, str] | None = None
    """(url, method)"""
    mqtt: tuple[str, str | None] | None = None
    """(topic, payload or None for the event as JSON)"""
    timeout_s: float = DEFAULT_TIMEOUT_S
    name: str | None = None

    @property
    def label(self) -> str:
        return f"hook #{self.index + 1}" + (f" ({self.name})" if self.name else f" on {self.on}")

    def wants(self, event: Event) -> bool:
        if event.type is not self.event_type:
            return False
        return self.on != "intent" or bool(event.data.get("intent"))


# -- loading ------------------------------------------------------------------


def load_hooks(tables: Sequence[Mapping[str, Any]]) -> list[Hook]:
    """Validate ``[[hook]]`` tables; raises TableError (a ConfigError) naming the key."""
    return [load_hook(table, index) for index, table in enumerate(tables)]


def load_hook(table: Mapping[str, Any], index: int) -> Hook:
    name = table.get("name")

    def error(key: str, problem: str, fix: str | None = None) -> TableError:
        return TableError("hook", index, name if isinstance(name, str) else None, key, problem, fix)

    unknown = sorted(set(table) - HOOK_KEYS)
    if unknown:
        raise error(unknown[0], "is not a known key", f"valid keys: {', '.join(sorted(HOOK_KEYS))}")
    if name is not None and not isinstance(name, str):
        raise error("name", "must be a string")
    on = table.get("on")
    names = sorted({*ALIASES, *(kind.value for kind in EventType)})
    if not isinstance(on, str) or on not in names:
        raise error("on", "must be an event name", f"one of: {', '.join(names)}")
    actions = [key for key in ("command", "webhook", "mqtt") if key in table]
    if len(actions) != 1:
        raise error("command", "or `webhook` or `mqtt`: give exactly one of them")
    timeout_s = table.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not (0 < timeout_s <= MAX_TIMEOUT_S)
    ):
        raise error("timeout_s", f"must be seconds, above 0 and at most {MAX_TIMEOUT_S:.0f}")
    hook = Hook(index, on, ALIASES.get(on) or EventType(on), timeout_s=float(timeout_s),
                name=name)  # fmt: skip
    if "command" in table:
        return _with_command(hook, table["command"], error)
    if "webhook" in table:
        return _with_webhook(hook, table["webhook"], error)
    return _with_mqtt(hook, table["mqtt"], error)


_Error = Callable[..., TableError]


def _with_command(hook: Hook, value: object, error: _Error) -> Hook:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise error("command", "must be a non-empty list of strings (argv; no shell)",
                    'e.g. command = ["logger", "-t", "voiced", "heard: {text}"]')  # fmt: skip
    if not value[0] or "\x00" in "".join(value):
        raise error("command", "must name a program first and hold no NUL characters")
    if "{" in value[0]:
        raise error("command", "must name its program literally, not from an event field")
    return _replace(hook, command=tuple(value))


def command_argv(template: Sequence[str], fields: Mapping[str, str]) -> list[str]:
    """``template`` filled; HookFailed when a field would start an option: an argument
    that begins with a placeholder, before any ``--``, filled with ``-...``."""
    argv = [template[0]]
    options_end = False
    for arg in template[1:]:
        value = fill(arg, fields)
        if not options_end and arg.startswith("{") and value.startswith("-"):
            raise HookFailed(f"{value[:40]!r} from an event field would be taken as an "
                             f"option of {template[0]}; put \"--\" before {arg!r} in the "
                             "command, or text before the placeholder")  # fmt: skip
        options_end = options_end or arg == "--"
        argv.append(value)
    return argv


def hook_env(
    extra_env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The minimal environment of a command hook, plus ``extra_env``."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in HOOK_ENV if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    return {**env, **extra_env}


def _with_webhook(hook: Hook, value: object, error: _Error) -> Hook:
    if not isinstance(value, dict) or set(value) - {"url", "method"}:
        raise error("webhook", "must be a table { url = ..., method = ... }")
    url, method = value.get("url"), value.get("method", "POST")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise error("webhook.url", "must be an http:// or https:// URL")
    if not isinstance(method, str) or method.upper() not in ("GET", "POST", "PUT", "PATCH"):
        raise error("webhook.method", "must be GET, POST, PUT or PATCH")
    return _replace(hook, webhook=(url, method.upper()))


def _with_mqtt(hook: Hook, value: object, error: _Error) -> Hook:
    if not isinstance(value, dict) or set(value) - {"topic", "payload"}:
        raise error("mqtt", "must be a table { topic = ..., payload = ... }")
    topic, payload = value.get("topic"), value.get("payload")
    if not isinstance(topic, str) or not topic or "#" in topic or "+" in topic:
        raise error("mqtt.topic", "must be a topic without wildcards (# +)")
    if payload is not None and not isinstance(payload, str):
        raise error("mqtt.payload", "must be a string")
    return _replace(hook, mqtt=(topic, payload))


def _replace(hook: Hook, **changes: Any) -> Hook:
    return dataclasses.replace(hook, **changes)


# -- running ------------------------------------------------------------------


class HookFailed(Exception):
    pass


@dataclass(slots=True)
class HookStats:
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    dropped: int = 0
    by_hook: dict[int, int] = field(default_factory=dict)
    """hook index -> runs finished (any outcome)."""


class HookRunner:
    """Runs hooks for bus events in the background; ``start()`` then ``await close()``."""

    def __init__(
        self, hooks: Sequence[Hook], bus: EventBus, *, publisher: Publisher | None = None,
        per_hook_waiting: int = PER_HOOK_WAITING, max_pending: int = MAX_PENDING,
    ) -> None:  # fmt: skip
        self.hooks = list(hooks)
        self.bus = bus
        self.publisher = publisher
        self.max_pending = max_pending
        self.per_hook_waiting = per_hook_waiting
        self.stats = HookStats()
        self._locks: dict[int, asyncio.Lock] = {}
        self._queued: dict[int, int] = {}
        """hook index -> runs started or waiting."""
        self._queue: asyncio.Queue[Event] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = RateLimitedLog(_LOGGER)

    def start(self) -> None:
        if self._dispatcher is not None or not self.hooks:
            return
        self._queue = self.bus.subscribe()
        self._dispatcher = asyncio.create_task(self._dispatch(self._queue), name="voiced-hooks")

    async def close(self) -> None:
        """Stop taking events; running hooks are cancelled (their processes killed)."""
        if self._queue is not None:
            self.bus.unsubscribe(self._queue)
        tasks = [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None

    async def _dispatch(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            for hook in self.hooks:
                if hook.wants(event):
                    self._spawn(hook, event)

    def replace_hooks(self, hooks: Sequence[Hook]) -> None:
        """New hooks (a reload) for the events to come; runs under way finish."""
        self.hooks = list(hooks)
        self._locks.clear()
        self._queued.clear()
        if self._dispatcher is None:
            self.start()

    def _spawn(self, hook: Hook, event: Event) -> None:
        queued = self._queued.get(hook.index, 0)
        if len(self._tasks) >= self.max_pending or queued > self.per_hook_waiting:
            self.stats.dropped += 1
            self._log.warning("dropped", "hooks are falling behind: %s skipped for %s",
                              hook.label, event.type.value)  # fmt: skip
            return
        self._queued[hook.index] = queued + 1
        lock = self._locks.setdefault(hook.index, asyncio.Lock())
        task = asyncio.create_task(self._run(hook, event, lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, hook: Hook, event: Event, lock: asyncio.Lock) -> None:
        try:
            async with lock:
                await self._run_locked(hook, event)
        finally:
            if self._locks.get(hook.index) is lock:
                self._queued[hook.index] = max(0, self._queued.get(hook.index, 1) - 1)

    async def _run_locked(self, hook: Hook, event: Event) -> None:
        try:
            await self._run_one(hook, event)
            self.stats.succeeded += 1
        except TimeoutError:
            self.stats.timed_out += 1
            self._log.warning(f"hook{hook.index}", "%s timed out after %.1f s and was killed",
                              hook.label, hook.timeout_s)  # fmt: skip
        except (HookFailed, OSError, ValueError, aiohttp.ClientError) as err:
            self.stats.failed += 1
            self._log.warning(f"hook{hook.index}", "%s failed: %s", hook.label, err)
        except Exception as err:  # a hook is peripheral: whatever it does, go on
            self.stats.failed += 1
            self._log.warning(f"hook{hook.index}", "%s crashed: %r", hook.label, err)
        finally:
            self.stats.by_hook[hook.index] = self.stats.by_hook.get(hook.index, 0) + 1

    async def _run_one(self, hook: Hook, event: Event) -> None:
        fields = event_fields(event)
        if hook.command is not None:
            await run_command(command_argv(hook.command, fields), event_env(event, fields),
                              hook.timeout_s)  # fmt: skip
        elif hook.webhook is not None:
            async with asyncio.timeout(hook.timeout_s):
                await _call_webhook(*hook.webhook, event)
        elif hook.mqtt is not None:
            topic, payload = hook.mqtt
            body = fill(payload, fields) if payload is not None else _event_json(event)
            if self.publisher is None:
                raise HookFailed("MQTT is not configured ([mqtt] host)")
            if not self.publisher.publish(fill(topic, fields, topic_value), body, qos=1):
                raise HookFailed("MQTT is not connected; message dropped")


def _event_json(event: Event) -> str:
    return json.dumps(event.to_dict(), ensure_ascii=False, default=str)


async def _call_webhook(url: str, method: str, event: Event) -> None:
    body = json.loads(_event_json(event))
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body) as resp:
        if resp.status >= 400:
            raise HookFailed(f"{method} {url} answered HTTP {resp.status}")


async def run_command(argv: Sequence[str], extra_env: Mapping[str, str], timeout_s: float) -> None:
    """Run ``argv`` (no shell) in its own process group; killed whole at the timeout."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=hook_env(extra_env), start_new_session=True,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            tail = await _stderr_tail(proc.stderr)
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
    if code != 0:
        reason = f"signal {-code}" if code < 0 else f"exit status {code}"
        raise HookFailed(f"{argv[0]} ended with {reason}" + (f": {tail}" if tail else ""))


async def _stderr_tail(stream: asyncio.StreamReader | None) -> str:
    """The last bytes of stderr, read to the end without keeping more than that."""
    tail = b""
    while stream is not None:
        chunk = await stream.read(4096)
        if not chunk:
            break
        tail = (tail + chunk)[-STDERR_TAIL_BYTES:]
    return tail.decode("utf-8", "replace").strip()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
