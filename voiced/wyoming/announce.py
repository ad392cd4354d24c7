"""Zeroconf: the server announced as ``_wyoming._tcp`` so Home Assistant finds it.

The instance name is ``voiced-<device id>-<port>``: the device id is the control
plane's (``mqtt.device_id``, else the host name and the start of /etc/machine-id),
so it stays the same across restarts, and the port tells two voiced on one host
apart. Registration runs in the background and a failure is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

_LOGGER = logging.getLogger(__name__)
SERVICE_TYPE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"
"""Connecting a UDP socket toward it (nothing is sent) tells the outgoing address."""


def instance_name(device_id: str, port: int) -> str:
    """At most 63 bytes (a DNS label); a long device id is cut, never the port."""
    suffix = f"-{port}"
    return f"voiced-{device_id}"[: 63 - len(suffix)] + suffix


def outward_address() -> str | None:
    """The address other hosts reach this one at, for a server bound to all of them."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((MDNS_GROUP, 1))
        address = str(probe.getsockname()[0])
        return None if address.startswith("0.") else address
    return None


class Announcer:
    def __init__(self, name: str, address: str, port: int) -> None:
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=port,
            addresses=[socket.inet_aton(address)],
            properties={"app": "voiced"},
        )
        self._zeroconf: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._register(), name="voiced-zeroconf")

    async def _register(self) -> None:
        try:
            self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
            await self._zeroconf.async_register_service(self.info)
            self.registered.set()
            _LOGGER.info("wyoming: announced as %s", self.info.name)
        except Exception as err:  # noqa: BLE001 - zeroconf raises many kinds; discovery is optional
            _LOGGER.warning(
                "wyoming: zeroconf announcement failed (%s); add the Wyoming "
                "integration by host and port instead",
                err,
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):
                if self.registered.is_set():
                    await self._zeroconf.async_unregister_service(self.info)
                await self._zeroconf.async_close()
