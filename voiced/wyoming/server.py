"""The Wyoming server in the daemon's event loop, beside the pipeline, sharing its
loaded models and worker threads.

Started by ``voiced run --wyoming HOST:PORT`` or ``[wyoming] listen``; off by
default, loopback when no host is given. At most ``wyoming.max_connections``
peers at once (more are closed at once); each is read through the bounded
framing and served by voiced.wyoming.connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging

from voiced.control.http_api import is_loopback
from voiced.control.mqtt import device_id_for
from voiced.engines.base import WakeWord
from voiced.engines.loader import make_wake_detector
from voiced.engines.wake_names import WAKE
from voiced.errors import ConfigError
from voiced.pipeline.assistant import Assistant
from voiced.ratelimit import RateLimitedLog
from voiced.settings import Settings, parse_host_port
from voiced.wyoming.announce import Announcer, instance_name, outward_address
from voiced.wyoming.connection import Connection, Offered
from voiced.wyoming.framing import MAX_HEADER_BYTES
from voiced.wyoming.info import Offer, build_info, wake_words_of
from voiced.wyoming.peer import Peer
from voiced.wyoming.satellite import SatelliteLink
from voiced.wyoming.services import Services

_LOGGER = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10700


class WyomingServer:
    def __init__(self, offered: Offered, settings: Settings) -> None:
        self.offered = offered
        self.settings = settings
        self.server: asyncio.Server | None = None
        self.port = 0
        self.announcer: Announcer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0
        """Connections closed at once: max_connections were open, or not allowed."""
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.wyoming.allow]
        self._refusals = RateLimitedLog(_LOGGER)

    @property
    def satellite(self) -> SatelliteLink | None:
        return self.offered.satellite

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.settings.wyoming.max_connections or not self._allowed(
            writer.get_extra_info("peername")
        ):
            self.refused += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await Connection(Peer(reader, writer), self.offered).run()
        except Exception:  # a bug in one connection must not reach the others
            _LOGGER.exception("wyoming: a connection failed")
        finally:
            self._connections.discard(task)

    def _allowed(self, peername: object) -> bool:
        """``[wyoming] allow`` (empty: every address)."""
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(peername[0])  # type: ignore[index]
        except (TypeError, IndexError, ValueError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        allowed = any(address in network for network in self.networks)
        if not allowed:  # rate-limited: a host dialling in a loop must not fill the log
            self._refusals.log(
                logging.INFO, "refused", "wyoming: refused %s (not in wyoming.allow)", address
            )
        return allowed

    async def close(self) -> None:
        if self.announcer is not None:
            await self.announcer.close()
        if self.server is not None:
            self.server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
        if self.offered.satellite is not None:
            await self.offered.satellite.close()
            self.offered.satellite.assistant.remote = None
        if self.offered.services is not None:
            self.offered.services.close()


def _is_ipv4(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def ipaddress_is_unspecified(host: str) -> bool:
    """0.0.0.0 or :: (every interface): zeroconf needs the address peers reach."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


async def start_wyoming(
    assistant: Assistant, settings: Settings, *, host: str | None = None, port: int | None = None
) -> WyomingServer:
    """Serve ``settings.wyoming`` (host/port override its listen; port 0 for tests)."""
    wyoming = settings.wyoming
    parsed = parse_host_port(wyoming.listen or f":{DEFAULT_PORT}", DEFAULT_HOST)
    if parsed is None:
        raise ConfigError(f"wyoming.listen {wyoming.listen!r:.60} must be HOST:PORT")
    host = host or parsed[0]
    port = parsed[1] if port is None else port
    engines = assistant.engines
    wake: WakeWord | None = None
    if wyoming.wake and engines.paths.wake:
        # The service's own detector: a wake word's stream state is per stream. The
        # wake word alone: a stop word heard must not wake Home Assistant.
        paths = dataclasses.replace(engines.paths, wake_words=())
        wake = await asyncio.to_thread(make_wake_detector, settings, paths)
    # [[wake.words]] with another action (stop, event) are no wake words to offer.
    actions: dict[str, str] = getattr(engines.wake, "actions", {})
    words = tuple(
        word for word in (wake_words_of(engines.wake) if engines.wake is not None else ())
        if actions.get(word.name, WAKE) == WAKE
    )  # fmt: skip
    satellite_on = wyoming.satellite and assistant.wake_mode and engines.wake is not None
    if wyoming.satellite and not satellite_on:
        _LOGGER.warning("wyoming: not a satellite: that needs voiced's wake word (no --no-wake)")
    device_id = device_id_for(settings.mqtt)
    offer = Offer(
        name=f"voiced {device_id}",
        area=wyoming.area,
        language=settings.asr.language or "en",
        asr_model=engines.paths.names.get("asr", "whisper") if wyoming.asr else None,
        tts_voice=engines.paths.names.get("tts", "piper") if wyoming.tts else None,
        wake_words=words,
        wake_service=wake is not None,
        handle=wyoming.handle,
        satellite=satellite_on,
    )
    services = Services(assistant, wyoming, wake)
    satellite = SatelliteLink(assistant, tuple(w.name for w in words)) if satellite_on else None
    offered = Offered(
        info=build_info(offer),
        services=services,
        asr=wyoming.asr,
        tts=wyoming.tts,
        wake=wake is not None,
        handle=wyoming.handle,
        satellite=satellite,
        max_audio_s=wyoming.max_audio_s,
    )
    server = WyomingServer(offered, settings)
    try:
        server.server = await asyncio.start_server(
            server._serve, host, port, limit=MAX_HEADER_BYTES
        )
    except OSError as err:
        services.close()
        raise ConfigError(
            f"wyoming.listen {host}:{port}: {err}",
            fix="choose a free port, or stop what listens there",
        ) from err
    sockets = server.server.sockets
    server.port = int(sockets[0].getsockname()[1]) if sockets else port
    if satellite is not None:
        assistant.remote = satellite
    if not is_loopback(host):
        _LOGGER.warning(
            "wyoming: serving %s:%d: anyone on that network can use this "
            "assistant (the protocol has no authentication)",
            host,
            server.port,
        )
        address = host if not ipaddress_is_unspecified(host) else outward_address()
        if wyoming.zeroconf and not _is_ipv4(address):
            _LOGGER.info(
                "wyoming: no zeroconf announcement for %s (IPv4 addresses only); "
                "add the integration by host and port",
                address or host,
            )
        elif wyoming.zeroconf and address is not None:
            server.announcer = Announcer(
                instance_name(device_id, server.port), address, server.port
            )
            server.announcer.start()
    _LOGGER.info("wyoming: serving on %s:%d", host, server.port)
    return server
