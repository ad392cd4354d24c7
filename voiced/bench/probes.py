"""Whole-process figures of the real daemon: start to ready, idle CPU, peak memory.

They run `voiced run` as a child process and read the kernel's own accounting
(/proc/<pid>/status VmHWM for peak RSS, /proc/<pid>/stat for CPU time) and the
READY=1 that the daemon sends systemd, received on a socket we own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from voiced.errors import VoicedError

READY_TIMEOUT_S = 120.0
IDLE_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    start_to_ready_s: float
    idle_cpu_percent: float
    """CPU used while listening for the wake word on silence, in % of one core."""
    peak_rss_mb: float
    """Peak resident memory of the daemon answering a question (all models loaded)."""


def _command(models_dir: Path, config: Path | None, *args: str) -> list[str]:
    command = [sys.executable, "-m", "voiced", "run", "--models-dir", str(models_dir), *args]
    return command + (["--config", str(config)] if config else [])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_and_idle(models_dir: Path, config: Path | None) -> tuple[float, float]:
    """Seconds from process start to READY=1, then idle-listening CPU %."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp, "notify"))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(READY_TIMEOUT_S)
            env = {**os.environ, "NOTIFY_SOCKET": path}
            started = time.monotonic()
            child = subprocess.Popen(
                _command(models_dir, config, "--input", "null", "--output", "null"), env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                while b"READY=1" not in sock.recv(4096):
                    pass
                ready_s = time.monotonic() - started
                time.sleep(1.0)  # let warm-up threads settle
                before = _cpu_seconds(child.pid)
                time.sleep(IDLE_WINDOW_S)
                idle = (_cpu_seconds(child.pid) - before) / IDLE_WINDOW_S * 100
            except (TimeoutError, OSError) as err:
                raise VoicedError(f"the daemon did not become ready: {err}") from err
            finally:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=30)
    return ready_s, idle


def peak_rss_answering(models_dir: Path, config: Path | None, wav: Path) -> float:
    """Peak RSS (MB) of `voiced run --no-wake --realtime` answering ``wav``."""
    child = subprocess.Popen(
        _command(models_dir, config, "--no-wake", "--realtime", "--input", str(wav),
                 "--output", "null"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0.0
    while child.poll() is None:
        try:
            peak = max(peak, _peak_rss_mb(child.pid))
        except (OSError, ValueError):
            break
        time.sleep(0.05)
    child.wait(timeout=60)
    return peak


def process_figures(models_dir: Path, config: Path | None, wav: Path) -> ProcessFigures:
    ready_s, idle = start_and_idle(models_dir, config)
    return ProcessFigures(ready_s, idle, peak_rss_answering(models_dir, config, wav))
