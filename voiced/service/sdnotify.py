"""sd_notify(3) over ``$NOTIFY_SOCKET`` with the standard library only.

The protocol is one datagram of newline-separated ``KEY=value`` assignments
sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` names
an abstract socket). Without the variable (not started by systemd, or a unit
without ``Type=notify``) every call is a no-op.

``watchdog_loop`` pets the systemd watchdog only while the microphone delivers
frames, so a dead microphone gets the service restarted instead of leaving it
deaf and "healthy".
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["SystemdNotifier", "watchdog_loop"]

_log = logging.getLogger(__name__)

MIC_STALLED_STATUS = "mic stalled: no audio frames"
MIC_RESUMED_STATUS = "listening"


class SystemdNotifier:
    """Sends state changes to the service manager; never raises on a send failure.

    ``environ`` defaults to ``os.environ`` and ``pid`` to ``os.getpid()``; both
    are read once, at construction.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._pid = os.getpid() if pid is None else pid
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when ``$NOTIFY_SOCKET`` names a socket to notify."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; True when it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full receive queue.
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as err:
            if not self._warned:
                self._warned = True
                _log.warning("cannot notify systemd on %r: %s", self._address, err)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: models loaded and the first microphone frame arrived."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_line(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: a one-line, human-readable state (shown by systemctl status)."""
        return self.notify(_status_line(text))

    def extend_timeout(self, usec: int) -> bool:
        """``EXTEND_TIMEOUT_USEC=``: the next message comes within ``usec`` microseconds."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(usec))}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive (send only while audio advances)."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify("STOPPING=1", _status_line(status))

    def watchdog_interval_s(self) -> float | None:
        """Half of ``$WATCHDOG_USEC`` in seconds, or None when the watchdog is off for us.

        The watchdog applies to this process when ``$WATCHDOG_PID`` is unset or
        equals our pid.
        """
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != self._pid:
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec or "0")
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; a later call reopens it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | None:
    if not value or value[0] not in "/@":
        return None
    if value[0] == "@":
        return "\0" + value[1:]
    return value


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


async def watchdog_loop(
    notifier: SystemdNotifier,
    frames_advanced: Callable[[], int],
    *,
    interval_s: float | None = None,
    stalled_status: str = MIC_STALLED_STATUS,
    resumed_status: str = MIC_RESUMED_STATUS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Send ``WATCHDOG=1`` every interval while the audio frame counter advances.

    ``frames_advanced`` returns the total number of microphone frames received
    so far. It should not decrease; a smaller value is taken as a reset (the
    microphone was reopened) and counts as progress only when it is above 0.
    When a whole interval passes without a new
    frame the pings stop and ``STATUS=`` says ``stalled_status``; when frames
    come back ``STATUS=`` says ``resumed_status`` and the pings resume.
    Statuses are sent only on those transitions, so the pipeline's own status
    messages are not overwritten every tick.

    ``interval_s`` defaults to ``notifier.watchdog_interval_s()``; without
    either the loop returns at once. Runs until cancelled.
    """
    interval = notifier.watchdog_interval_s() if interval_s is None else interval_s
    if interval is None or interval <= 0:
        return
    last = frames_advanced()
    stalled = False
    while True:
        await sleep(interval)
        now = frames_advanced()
        advanced = now > last or 0 < now < last
        last = now
        if advanced:
            if stalled:
                stalled = False
                _log.info("microphone frames resumed")
                notifier.status(resumed_status)
            notifier.watchdog()
        elif not stalled:
            stalled = True
            _log.warning("no microphone frames for %.1f s; withholding watchdog pings", interval)
            notifier.status(stalled_status)
