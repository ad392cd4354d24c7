"""sd_notify against a real AF_UNIX datagram socket owned by the test."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

from voiced.service.sdnotify import SystemdNotifier, watchdog_loop

TIMEOUT_S = 5.0


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest) -> Iterator[tuple[str, socket.socket]]:
    """($NOTIFY_SOCKET value, the bound receiving socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT_S)
    tmpdir = None
    if request.param == "path":
        # A short directory: AF_UNIX paths are limited to 107 bytes.
        tmpdir = tempfile.mkdtemp(prefix="sdn-")
        name = os.path.join(tmpdir, "notify")
        sock.bind(name)
    else:
        name = f"@voiced-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    try:
        yield name, sock
    finally:
        sock.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir)


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages(notify_socket: tuple[str, socket.socket]) -> None:
    name, sock = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    assert notifier.ready()
    assert _recv(sock) == "READY=1"
    assert notifier.ready("listening")
    assert _recv(sock) == "READY=1\nSTATUS=listening"
    assert notifier.status("loading whisper-base\nstep 2")
    assert _recv(sock) == "STATUS=loading whisper-base step 2"
    assert notifier.extend_timeout(30_000_000)
    assert _recv(sock) == "EXTEND_TIMEOUT_USEC=30000000"
    assert notifier.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert _recv(sock) == "STOPPING=1"
    notifier.close()


def test_noop_without_notify_socket() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval_s() is None


def test_send_failure_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent-dir/voiced/notify"})
    with caplog.at_level(logging.WARNING, logger="voiced.service.sdnotify"):
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.status("x")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "nonsense"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier(env, pid=4242).watchdog_interval_s() == expected


def test_watchdog_interval_defaults_to_own_pid() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(env).watchdog_interval_s() == 1.0


async def _arecv(sock: socket.socket) -> str:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT_S)
    return data.decode()


class Stepper:
    """A fake sleep: each tick is released by the test, after the previous one ran."""

    def __init__(self) -> None:
        self.waiting: asyncio.Queue[None] = asyncio.Queue()
        self.ticks: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, _seconds: float) -> None:
        self.waiting.put_nowait(None)
        await self.ticks.get()

    async def tick(self, set_counter: Callable[[], None] = lambda: None) -> None:
        """Wait until the loop sleeps (previous tick done), change the counter, wake it."""
        await asyncio.wait_for(self.waiting.get(), TIMEOUT_S)
        set_counter()
        self.ticks.put_nowait(None)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), TIMEOUT_S)


def test_watchdog_loop_pings_only_while_frames_advance(
    notify_socket: tuple[str, socket.socket],
) -> None:
    name, sock = notify_socket
    sock.setblocking(False)

    async def scenario() -> None:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": name})
        frames = [0]

        def set_frames(n: int) -> Callable[[], None]:
            return lambda: frames.__setitem__(0, n)

        stepper = Stepper()
        task = asyncio.create_task(
            watchdog_loop(notifier, lambda: frames[0], interval_s=15.0, sleep=stepper.sleep)
        )
        await stepper.tick(set_frames(5))
        assert await _arecv(sock) == "WATCHDOG=1"
        await stepper.tick()  # no new frames: stalled, no ping
        assert await _arecv(sock) == "STATUS=mic stalled: no audio frames"
        await stepper.tick()  # still stalled: nothing at all is sent
        await stepper.tick(set_frames(9))  # frames again
        # A ping during the stall would have arrived before this status.
        assert await _arecv(sock) == "STATUS=listening"
        assert await _arecv(sock) == "WATCHDOG=1"
        await stepper.tick(set_frames(3))  # reopened microphone: counter reset, frames > 0
        assert await _arecv(sock) == "WATCHDOG=1"
        await stepper.tick(set_frames(0))  # reset with no frames since: stalled
        assert await _arecv(sock) == "STATUS=mic stalled: no audio frames"
        await _stop(task)
        notifier.close()

    asyncio.run(scenario())


def test_watchdog_loop_with_a_short_real_interval(
    notify_socket: tuple[str, socket.socket],
) -> None:
    name, sock = notify_socket
    sock.setblocking(False)

    async def scenario() -> None:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": name})
        frames = [0]
        running = asyncio.Event()
        running.set()

        async def microphone() -> None:
            while True:
                await running.wait()
                frames[0] += 1
                await asyncio.sleep(0.001)

        mic = asyncio.create_task(microphone())
        task = asyncio.create_task(watchdog_loop(notifier, lambda: frames[0], interval_s=0.01))
        assert await _arecv(sock) == "WATCHDOG=1"
        running.clear()  # the microphone dies
        while (message := await _arecv(sock)) == "WATCHDOG=1":
            pass
        assert message == "STATUS=mic stalled: no audio frames"
        running.set()  # it comes back; the counter was frozen until now
        assert await _arecv(sock) == "STATUS=listening"
        assert await _arecv(sock) == "WATCHDOG=1"
        await _stop(task)
        await _stop(mic)
        notifier.close()

    asyncio.run(scenario())


def test_watchdog_loop_returns_without_watchdog() -> None:
    async def scenario() -> None:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@unused"})
        await asyncio.wait_for(watchdog_loop(notifier, lambda: 0), TIMEOUT_S)

    asyncio.run(scenario())


def test_watchdog_loop_uses_the_environment_interval(
    notify_socket: tuple[str, socket.socket],
) -> None:
    name, sock = notify_socket
    sock.setblocking(False)

    async def scenario() -> None:
        # WATCHDOG_USEC=20000 -> a ping every 10 ms while frames advance.
        notifier = SystemdNotifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000"})
        count = iter(range(1, 1_000_000))
        task = asyncio.create_task(watchdog_loop(notifier, lambda: next(count)))
        assert await _arecv(sock) == "WATCHDOG=1"
        await _stop(task)
        notifier.close()

    asyncio.run(scenario())
