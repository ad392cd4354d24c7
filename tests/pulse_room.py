"""A real sound server with a speaker wired to its microphone, for the sound-card tests.

A private PulseAudio (no sound card needed) with one null sink, ``room``: what
is played into it comes back on its monitor, the default source, after the
server's real buffering. voiced opens it as the ALSA device ``pulse`` through
PortAudio, the path a board's user runs; the "user" speaks with ``paplay``
into the same sink, so the microphone hears the reply (the echo) and the user
mixed, and only the reply is in voiced's far end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PULSEAUDIO = shutil.which("pulseaudio")
PAPLAY = shutil.which("paplay")
MISSING = None if PULSEAUDIO and PAPLAY else "needs pulseaudio and pulseaudio-utils"
SINK = "room"
DEVICE = "pulse"
"""The ALSA device (libasound2-plugins) that voiced opens for both directions."""
START_TIMEOUT_S = 10.0


@contextmanager
def pulse_room(run_dir: Path) -> Iterator[dict[str, str]]:
    """Starts the server; yields the environment that reaches it (PULSE_SERVER)."""
    assert PULSEAUDIO is not None and PAPLAY is not None, MISSING
    run_dir.mkdir(parents=True, exist_ok=True)
    socket = run_dir / "native"
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(run_dir), "HOME": str(run_dir)}
    server = subprocess.Popen(
        [PULSEAUDIO, "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
         "--use-pid-file=no", "--log-target=stderr", "-L",
         f"module-null-sink sink_name={SINK} rate=48000 channels=1", "-L",
         f"module-native-protocol-unix auth-anonymous=1 socket={socket}"],
        env=env, stdout=subprocess.DEVNULL, stderr=(run_dir / "pulse.log").open("w"),
    )  # fmt: skip
    client_env = {**env, "PULSE_SERVER": f"unix:{socket}"}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                log = (run_dir / "pulse.log").read_text(errors="replace")
                raise RuntimeError(f"pulseaudio did not start:\n{log[-2000:]}")
            time.sleep(0.05)
        yield client_env
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def say_into_the_room(wav: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The user speaks: ``wav`` played into the room's sink (not through voiced)."""
    assert PAPLAY is not None, MISSING
    return subprocess.Popen([PAPLAY, f"--device={SINK}", str(wav)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
