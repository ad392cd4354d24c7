"""The ``_wyoming._tcp`` announcement: a name that is stable per device and port,
and a registration another host's zeroconf can resolve."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from zeroconf.asyncio import AsyncZeroconf

from voiced.control.mqtt import device_id_for
from voiced.settings import MqttSettings
from voiced.wyoming.announce import SERVICE_TYPE, Announcer, instance_name

pytestmark = pytest.mark.timeout(60)


def test_the_name_is_stable_and_two_instances_on_one_host_differ(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    device = device_id_for(MqttSettings(), hostname="raspberrypi", machine_id=machine_id)
    again = device_id_for(MqttSettings(), hostname="raspberrypi", machine_id=machine_id)
    assert instance_name(device, 10700) == instance_name(again, 10700)
    assert instance_name(device, 10700) == "voiced-raspberrypi_01234567-10700"
    assert instance_name(device, 10700) != instance_name(device, 10701)
    other_board = tmp_path / "other"
    other_board.write_text("fedcba9876543210fedcba9876543210\n")
    assert device_id_for(MqttSettings(), hostname="raspberrypi", machine_id=other_board) != device


def test_the_announcement_resolves_to_the_address_and_port() -> None:
    name = f"voiced-test-{uuid.uuid4().hex[:8]}-10799"

    async def main() -> tuple[int, list[str]]:
        announcer = Announcer(name, "127.0.0.1", 10799)
        announcer.start()
        try:
            await asyncio.wait_for(announcer.registered.wait(), 20)
            browser = AsyncZeroconf()
            try:
                info = await browser.async_get_service_info(
                    SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", timeout=5000
                )
            finally:
                await browser.async_close()
        finally:
            await announcer.close()
        assert info is not None
        return info.port or 0, info.parsed_addresses()

    port, addresses = asyncio.run(main())
    assert port == 10799
    assert addresses == ["127.0.0.1"]


@pytest.mark.parametrize("value", ["10700", "host:", "host:70000", "::"])
def test_a_bad_wyoming_flag_is_a_clear_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from voiced.cli.main import main

    assert main(["run", "--wyoming", value]) != 0
    assert "--wyoming wants HOST:PORT" in capsys.readouterr().err


def test_a_long_host_name_keeps_the_port_in_the_name(tmp_path: Path) -> None:
    """A DNS label is 63 bytes: cutting the whole name there cut the port off, so two
    instances on a host with a long name had one name (the second failed to register)."""
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    device = device_id_for(MqttSettings(), hostname="living-room-" * 5, machine_id=machine_id)
    first, second = instance_name(device, 10700), instance_name(device, 10701)
    assert first != second
    assert first.endswith("-10700") and len(first.encode()) <= 63
    assert len(second.encode()) <= 63
