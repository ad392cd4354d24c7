"""Event hooks: real commands, a real webhook server, timeouts and crashes."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from voiced.control.hooks import (
    HOOK_ENV,
    PER_HOOK_WAITING,
    HookFailed,
    HookRunner,
    command_argv,
    load_hooks,
)
from voiced.errors import ConfigError
from voiced.pipeline.events import Event, EventBus, EventType

TIMEOUT_S = 20.0
WRITE_ARGS = (
    "import os, sys; open(sys.argv[2], 'a').write("
    "sys.argv[1] + '|' + os.environ['VOICED_TEXT'] + '|' + os.environ['VOICED_EVENT'] + '\\n')"
)


def transcript(text: str, turn_id: int = 1) -> Event:
    return Event(EventType.STT_END, {"turn_id": turn_id, "text": text, "compute_ms": 12.5})


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (the condition is another process's work)
        await asyncio.sleep(0.01)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S))


def test_command_gets_fields_in_argv_and_env_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "heard.txt"
    hooks = load_hooks(
        [
            {
                "on": "transcript",
                "command": [sys.executable, "-c", WRITE_ARGS, "heard: {text}", str(out)],
            }
        ]
    )
    hostile = 'lights"; touch /tmp/pwned $(id) `id` {turn_id}'

    async def main() -> None:
        bus = EventBus()
        runner = HookRunner(hooks, bus)
        runner.start()
        bus.publish(Event(EventType.STT_START, {"turn_id": 1}))  # not hooked
        bus.publish(transcript(hostile))
        await until(lambda: runner.stats.by_hook.get(0) == 1)
        await runner.close()
        assert runner.stats.succeeded == 1

    run(main())
    # {turn_id} inside the *value* stays literal: values are not templates again
    assert out.read_text() == f"heard: {hostile}|{hostile}|stt-end\n"


def test_the_documented_example_loads() -> None:
    (hook,) = load_hooks(
        [{"on": "transcript", "command": ["logger", "-t", "voiced", "heard: {text}"]}]
    )
    assert hook.event_type is EventType.STT_END and hook.timeout_s == 10.0
    assert hook.command == ("logger", "-t", "voiced", "heard: {text}")


def test_a_hanging_hook_is_killed_while_the_bus_keeps_flowing(tmp_path: Path) -> None:
    pid_file, out = tmp_path / "pid", tmp_path / "ok.txt"
    hang = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    hooks = load_hooks(
        [
            {"on": "wake", "command": hang, "timeout_s": 0.5},
            {"on": "transcript", "command": [sys.executable, "-c", WRITE_ARGS, "{text}", str(out)]},
        ]
    )

    async def main() -> None:
        bus = EventBus()
        watcher = bus.subscribe()
        runner = HookRunner(hooks, bus)
        runner.start()
        bus.publish(Event(EventType.WAKE_WORD_END, {"turn_id": 1, "wake_word": "hey_jarvis"}))
        await until(pid_file.exists)
        for number in range(3):  # the hanging hook holds up neither the bus nor other hooks
            bus.publish(transcript(f"t{number}", number))
        await until(lambda: runner.stats.by_hook.get(1) == 3)
        assert watcher.qsize() == 4
        await until(lambda: runner.stats.timed_out == 1)
        await runner.close()

    run(main())
    assert sorted(out.read_text().splitlines()) == [f"t{n}|t{n}|stt-end" for n in range(3)]
    grandchild = int(pid_file.read_text())
    assert not _alive(grandchild), "the hook's whole process group is killed"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_crashing_and_missing_commands_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    hooks = load_hooks(
        [
            {"on": "error", "command": [sys.executable, "-c", "import os; os.abort()"]},
            {"on": "error", "command": ["/nonexistent/voiced-hook"]},
            {
                "on": "error",
                "command": [sys.executable, "-c", "import sys; sys.exit('bad things')"],
            },
        ]
    )

    async def main() -> None:
        bus = EventBus()
        runner = HookRunner(hooks, bus)
        runner.start()
        bus.publish(Event(EventType.ERROR, {"code": "engine", "message": "x"}))
        await until(lambda: sum(runner.stats.by_hook.values()) == 3)
        await runner.close()
        assert runner.stats.failed == 3

    with caplog.at_level(logging.WARNING, logger="voiced.control.hooks"):
        run(main())
    text = caplog.text
    assert "hook #1 on error failed" in text and "signal 6" in text
    assert "hook #2 on error failed" in text and "voiced-hook" in text
    assert "exit status 1: bad things" in text


def test_repeated_failures_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    hooks = load_hooks([{"on": "transcript", "command": ["/nonexistent/voiced-hook"]}])

    async def main() -> None:
        bus = EventBus()
        runner = HookRunner(hooks, bus)
        runner.start()
        for number in range(5):
            bus.publish(transcript("x", number))
        await until(lambda: runner.stats.failed == 5)
        await runner.close()

    with caplog.at_level(logging.WARNING, logger="voiced.control.hooks"):
        run(main())
    assert caplog.text.count("failed") == 1


def test_webhook_posts_the_event_and_mqtt_hook_publishes() -> None:
    received: list[dict[str, Any]] = []
    published: list[tuple[str, str | bytes]] = []

    class Publisher:
        def publish(
            self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
        ) -> bool:
            published.append((topic, payload))
            return True

    async def handler(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", handler)
        app_runner = web.AppRunner(app)
        await app_runner.setup()
        site = web.TCPSite(app_runner, "127.0.0.1", 0)
        await site.start()
        port = app_runner.addresses[0][1]
        hooks = load_hooks(
            [
                {"on": "intent", "webhook": {"url": f"http://127.0.0.1:{port}/hook"}},
                {"on": "reply", "mqtt": {"topic": "home/said/{intent}", "payload": "{reply}"}},
                {"on": "intent-end", "mqtt": {"topic": "home/raw"}},
            ]
        )
        bus = EventBus()
        runner = HookRunner(hooks, bus, publisher=Publisher())
        runner.start()
        bus.publish(Event(EventType.INTENT_END, {"reply": "Sure.", "intent": None}))
        bus.publish(
            Event(EventType.INTENT_END, {"reply": "On.", "intent": "light on", "slots": {}})
        )
        await until(lambda: sum(runner.stats.by_hook.values()) == 5)
        await runner.close()
        await app_runner.cleanup()
        assert runner.stats.succeeded == 5

    run(main())
    assert len(received) == 1 and received[0]["type"] == "intent-end"
    assert received[0]["data"] == {"reply": "On.", "intent": "light on", "slots": {}}
    assert ("home/said/_", "Sure.") in published and ("home/said/light_on", "On.") in published
    raw = [json.loads(payload) for topic, payload in published if topic == "home/raw"]
    assert [r["data"]["reply"] for r in raw] == ["Sure.", "On."]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"command": ["true"]}, "`on`"),
        ({"on": "wakey", "command": ["true"]}, "`on`"),
        ({"on": "wake"}, "`command`"),
        ({"on": "wake", "command": ["true"], "mqtt": {"topic": "a"}}, "`command`"),
        ({"on": "wake", "command": "rm -rf /"}, "`command`"),
        ({"on": "wake", "command": []}, "`command`"),
        ({"on": "wake", "command": ["true"], "timeout_s": 0}, "`timeout_s`"),
        ({"on": "wake", "command": ["true"], "timeout_s": True}, "`timeout_s`"),
        ({"on": "wake", "command": ["true"], "shell": True}, "`shell`"),
        ({"on": "wake", "webhook": {"url": "file:///etc/passwd"}}, "`webhook.url`"),
        ({"on": "wake", "webhook": {"url": "http://x", "method": "TRACE"}}, "`webhook.method`"),
        ({"on": "wake", "mqtt": {"topic": "a/#"}}, "`mqtt.topic`"),
        ({"on": "wake", "mqtt": {"topic": "a", "payload": 5}}, "`mqtt.payload`"),
    ],
)
def test_config_errors_name_the_hook_and_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_hooks([{"on": "wake", "command": ["true"]}, table])
    assert caught.value.message.startswith("hook #2")
    assert key in caught.value.message


# -- issue 13: environment, option injection, one slow hook -----------------------

DUMP_ENV = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"


def test_a_command_gets_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.json"
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/voiced.service")
    monkeypatch.setenv("VOICED_SECRET_THING", "no")
    monkeypatch.setenv("LANG", "C.UTF-8")
    hooks = load_hooks([{"on": "transcript", "command": [sys.executable, "-c", DUMP_ENV,
                                                         str(out)]}])  # fmt: skip

    async def main() -> None:
        bus = EventBus()
        runner = HookRunner(hooks, bus)
        runner.start()
        bus.publish(transcript("hello"))
        await until(lambda: runner.stats.by_hook.get(0) == 1)
        await runner.close()

    run(main())
    env = json.loads(out.read_text())
    assert "NOTIFY_SOCKET" not in env and "CREDENTIALS_DIRECTORY" not in env
    assert "VOICED_SECRET_THING" not in env
    assert env["VOICED_TEXT"] == "hello" and env["LANG"] == "C.UTF-8" and env["PATH"]
    allowed = {*HOOK_ENV, "VOICED_EVENT", "VOICED_EVENT_JSON", "VOICED_TEXT",
               "VOICED_TURN_ID", "VOICED_COMPUTE_MS"}  # fmt: skip
    assert set(env) - {"LC_CTYPE"} <= allowed  # Python may set LC_CTYPE itself


def test_a_transcript_cannot_become_an_option() -> None:
    fields = {"text": "--help", "n": "-rf"}
    with pytest.raises(HookFailed, match="option"):
        command_argv(["rm", "{n}", "/tmp/x"], fields)
    with pytest.raises(HookFailed, match="option"):
        command_argv(["logger", "-t", "voiced", "{text}"], fields)
    assert command_argv(["logger", "--", "{text}"], fields) == ["logger", "--", "--help"]
    assert command_argv(["logger", "heard: {text}"], fields) == ["logger", "heard: --help"]
    assert command_argv(["echo", "{text}"], {"text": "plain"}) == ["echo", "plain"]
    with pytest.raises(ConfigError, match="program literally"):
        load_hooks([{"on": "transcript", "command": ["{text}", "x"]}])


def test_one_slow_hook_cannot_hold_up_the_others(tmp_path: Path) -> None:
    """Four hung runs of one hook used to take all four slots: now each hook runs
    one at a time with a few waiting, and the others keep running."""
    out = tmp_path / "ok.txt"
    hooks = load_hooks([
        {"on": "wake", "command": ["sleep", "60"], "timeout_s": 60},
        {"on": "transcript", "command": [sys.executable, "-c", WRITE_ARGS, "{text}", str(out)]},
    ])  # fmt: skip

    async def main() -> None:
        bus = EventBus()
        runner = HookRunner(hooks, bus)
        runner.start()
        for number in range(PER_HOOK_WAITING + 4):
            bus.publish(Event(EventType.WAKE_WORD_END, {"turn_id": number}))
        for number in range(PER_HOOK_WAITING + 1):
            bus.publish(transcript(f"t{number}", number))
        await until(lambda: runner.stats.by_hook.get(1) == PER_HOOK_WAITING + 1)
        assert runner.stats.dropped == 3, "the slow hook: one running, the rest wait, 3 dropped"
        await runner.close()

    run(main())
    assert len(out.read_text().splitlines()) == PER_HOOK_WAITING + 1
