"""The local voice path comes first: a Wyoming request holds an engine only when
the local session does not need it, one request at a time, for a bounded wait."""

from __future__ import annotations

import asyncio

import pytest

from voiced.wyoming.audio_in import AudioIn, BadRequest
from voiced.wyoming.services import EngineSlot


def test_a_request_waits_while_the_local_turn_needs_the_engine() -> None:
    async def main() -> list[str]:
        local_busy = True
        order: list[str] = []
        slot = EngineSlot(lambda: local_busy, wait_s=10.0)

        async def request() -> None:
            async with slot.hold():
                order.append("wyoming")

        task = asyncio.create_task(request())
        for _ in range(5):
            await asyncio.sleep(0)
        order.append("local turn ends")
        local_busy = False
        await asyncio.wait_for(task, 5)
        return order

    assert asyncio.run(main()) == ["local turn ends", "wyoming"]


def test_one_request_at_a_time_and_busy_after_the_wait() -> None:
    async def main() -> tuple[int, list[str]]:
        slot = EngineSlot(lambda: False, wait_s=0.2)
        inside = 0
        most = 0
        answers: list[str] = []
        release = asyncio.Event()

        async def request() -> None:
            nonlocal inside, most
            try:
                async with slot.hold():
                    inside += 1
                    most = max(most, inside)
                    await release.wait()
                    inside -= 1
                answers.append("served")
            except BadRequest as err:
                answers.append(err.code)

        tasks = [asyncio.create_task(request()) for _ in range(3)]
        await asyncio.sleep(0.5)  # past the others' wait: they are refused
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return most, sorted(answers)

    most, answers = asyncio.run(main())
    assert most == 1
    assert answers == ["busy", "busy", "served"]


def test_a_request_refused_while_the_local_turn_keeps_the_engine() -> None:
    async def main() -> None:
        slot = EngineSlot(lambda: True, wait_s=0.1)
        async with slot.hold():
            raise AssertionError("held while the local turn needed it")

    with pytest.raises(BadRequest, match="voiced's own turn"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"rate": 16000, "width": 1, "channels": 1}, "bad-audio"),
        ({"rate": 4000, "width": 2, "channels": 1}, "bad-audio"),
        ({"rate": 16000, "width": 2, "channels": 6}, "bad-audio"),
        ({"rate": "16000", "width": 2, "channels": 1}, "bad-audio"),
        ({"rate": True, "width": 2, "channels": 1}, "bad-audio"),
        ({"width": 2, "channels": 1}, "bad-audio"),
    ],
)
def test_audio_formats_other_than_16_bit_8_to_48_khz_are_refused(
    fields: dict[str, object], code: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        AudioIn.starting(fields, max_audio_s=1.0)
    assert raised.value.code == code


def test_stereo_at_48_khz_becomes_pipeline_audio_and_the_cap_holds() -> None:
    audio = AudioIn.starting({"rate": 48000, "width": 2, "channels": 2}, max_audio_s=1.0)
    fields = {"rate": 48000, "width": 2, "channels": 2}
    out = b"".join(audio.add(fields, bytes(4 * 4800)) for _ in range(10)) + audio.finish()
    assert abs(len(out) - 2 * 16000) <= 2 * 64  # one second at 16 kHz, give or take the filter
    with pytest.raises(BadRequest) as raised:
        audio.add(fields, bytes(4))
    assert raised.value.code == "too-long"
    with pytest.raises(BadRequest, match="another|stream"):
        AudioIn.starting(fields, max_audio_s=1.0).add(
            {"rate": 16000, "width": 2, "channels": 1}, bytes(2)
        )
