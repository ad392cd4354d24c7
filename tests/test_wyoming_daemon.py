"""`voiced run` with ``[wyoming] listen``: the one server in the daemon's process,
on the models the daemon loaded, answering Home Assistant's describe."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from tests.daemon_process import spawn_daemon

pytestmark = pytest.mark.timeout(300)
STARTUP_S = 180.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def describe_and_speak(port: int) -> tuple[Info, list[str]]:
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                event = await asyncio.wait_for(client.read_event(), 10)
                assert event is not None and Info.is_type(event.type)
                info = Info.from_event(event)
                await client.write_event(Synthesize(text="Ready.").event())
                kinds = []
                while kinds[-1:] != ["audio-stop"]:
                    reply = await asyncio.wait_for(client.read_event(), 30)
                    assert reply is not None
                    kinds.append(reply.type)
                return info, kinds
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_the_daemon_serves_wyoming_beside_its_pipeline(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "voiced.toml"
    config.write_text(f'[wyoming]\nlisten = "127.0.0.1:{port}"\narea = "Kitchen"\n')
    daemon = spawn_daemon(config, models_dir, tmp_path / "log.txt", log_level="INFO")
    try:
        info, kinds = asyncio.run(describe_and_speak(port))
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    log = (tmp_path / "log.txt").read_text()
    assert code == 0, log
    assert [p.name for p in info.asr] == ["voiced-asr"] and len(info.tts) == 1
    assert info.satellite is None  # --no-wake: no wake word of its own to be a satellite with
    assert "not a satellite" in log and f"wyoming: serving on 127.0.0.1:{port}" in log
    assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop" and "audio-chunk" in kinds
