"""ResilientSource: reopen with backoff, renumber frames, report loss, give up on request.

Fake sources and a fake clock; the injected sleep advances the fake clock and
never sleeps for real. Every await runs under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from voiced.audio.format import FRAME_SAMPLES, AudioFrame
from voiced.audio.resilient import MAX_BACKOFF_S, STOPPED_REASON, ResilientSource
from voiced.audio.sources import AudioSource
from voiced.errors import AudioError

TIMEOUT_S = 5.0
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, TIMEOUT_S)

    return asyncio.run(bounded())


class FakeTime:
    """A monotonic clock that only the injected sleep moves."""

    def __init__(self, advance: bool = True) -> None:
        self.now = 100.0
        self.advance = advance
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        if self.advance:
            self.now += seconds
        await asyncio.sleep(0)


class FakeSource:
    """Yields ``count`` frames numbered from 0 (None: for ever), then raises
    ``error`` (or ends when it is None)."""

    def __init__(self, count: int | None, error: BaseException | None = None) -> None:
        self.count = count
        self.error = error
        self.closed = False
        self.iterated = False

    async def frames(self) -> AsyncGenerator[AudioFrame, None]:
        self.iterated = True
        n = 0
        while self.count is None or n < self.count:
            await asyncio.sleep(0)
            yield AudioFrame(bytes([n % 256]) * (FRAME_SAMPLES * 2), n * FRAME_SAMPLES,
                             captured_at_s=100.0 + n * 0.01)  # fmt: skip
            n += 1
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


class Factory:
    """Hands out the planned sources in order; an exception in the plan is raised by
    the factory itself (the device cannot be opened)."""

    def __init__(self, plan: list[FakeSource | BaseException]) -> None:
        self.plan: Iterator[FakeSource | BaseException] = iter(plan)
        self.made: list[FakeSource] = []

    def __call__(self) -> AudioSource:
        item = next(self.plan)
        if isinstance(item, BaseException):
            raise item
        self.made.append(item)
        return item


def make(
    plan: list[FakeSource | BaseException], time: FakeTime, **kwargs: Any
) -> tuple[ResilientSource, Factory, list[str]]:
    factory = Factory(plan)
    log: list[str] = []
    source = ResilientSource(
        factory, on_lost=lambda reason: log.append(f"lost: {reason}"),
        on_restored=lambda: log.append("restored"), sleep=time.sleep, clock=time.clock,
        **kwargs,
    )  # fmt: skip
    return source, factory, log


async def take(source: ResilientSource, count: int) -> list[AudioFrame]:
    out: list[AudioFrame] = []
    async with contextlib.aclosing(source.frames()) as frames:
        async for frame in frames:
            out.append(frame)
            if len(out) == count:
                break
    return out


def starts(frames: list[AudioFrame]) -> list[int]:
    return [f.start_sample for f in frames]


def test_passes_frames_through_untouched_while_the_source_works() -> None:
    time = FakeTime()
    source, factory, log = make([FakeSource(None)], time)
    frames = run(take(source, 50))
    assert starts(frames) == [n * FRAME_SAMPLES for n in range(50)]
    assert log == [] and time.sleeps == [] and source.reconnects == 0
    assert factory.made[0].closed, "closing the stream closes the source"


@pytest.mark.parametrize(
    "error",
    [AudioError("microphone 'USB' delivered no audio for 2 s"), OSError(19, "No such device")],
    ids=["audio-error", "os-error"],
)
def test_reconnects_after_a_source_dies_mid_stream(error: BaseException) -> None:
    time = FakeTime(advance=False)
    source, factory, log = make([FakeSource(3, error), FakeSource(None)], time)
    frames = run(take(source, 6))
    assert starts(frames) == [n * FRAME_SAMPLES for n in range(6)], "contiguous, no time passed"
    assert [f.pcm[0] for f in frames] == [0, 1, 2, 0, 1, 2], "the new source's audio"
    assert [f.captured_at_s for f in frames[3:]] == [100.0, 100.01, 100.02], (
        "renumbered frames keep the sound card's capture time, for the echo canceller"
    )
    assert source.reconnects == 1 and not source.lost
    assert len(log) == 2 and log[0].startswith("lost: ") and log[1] == "restored"
    assert ("no audio" in log[0]) if isinstance(error, AudioError) else ("No such device" in log[0])
    assert time.sleeps == [0.5]
    assert factory.made[0].closed


def test_the_stream_clock_counts_the_outage_and_never_goes_back() -> None:
    time = FakeTime()
    plan: list[FakeSource | BaseException] = [
        FakeSource(4, AudioError("gone")), AudioError("cannot open"), FakeSource(2),
        FakeSource(None),
    ]  # fmt: skip
    source, _, log = make(plan, time)
    frames = run(take(source, 9))
    got = starts(frames)
    assert all(b >= a + FRAME_SAMPLES for a, b in zip(got, got[1:], strict=False))
    assert got[:4] == [0, 160, 320, 480]
    # Down 0.5 + 1.0 s (two failures) after the frame at 480: the next starts 1.5 s later.
    assert time.sleeps == [0.5, 1.0, 0.5]
    assert got[4] == 480 + 24_000
    assert got[5] == got[4] + FRAME_SAMPLES
    # The 2-frame source ended (a stop, not an error): one 0.5 s back-off, reset by frames.
    assert got[6] == got[5] + 8_000
    assert source.reconnects == 2
    assert log == ["lost: gone", "restored", f"lost: {STOPPED_REASON}", "restored"]


def test_a_source_that_yields_nothing_backs_off_exponentially() -> None:
    time = FakeTime()
    plan: list[FakeSource | BaseException] = [FakeSource(1)]
    plan += [FakeSource(0) for _ in range(8)] + [FakeSource(None)]
    source, factory, log = make(plan, time)
    frames = run(take(source, 3))
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    assert log == [f"lost: {STOPPED_REASON}", "restored"], "one report per outage"
    assert source.failed_opens == 8 and source.reconnects == 1
    assert all(s.closed for s in factory.made)
    assert starts(frames)[:2] == [0, round(sum(time.sleeps) * 16_000)], "55.5 s down"


def test_fails_to_open_k_times_then_starts() -> None:
    time = FakeTime()
    k = 5
    plan: list[FakeSource | BaseException] = [AudioError("no default input device")] * k
    source, _, log = make([*plan, FakeSource(None)], time)
    frames = run(take(source, 3))
    assert starts(frames) == [0, 160, 320], "the first frames ever start at 0"
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert source.failed_opens == k
    assert source.reconnects == 0, "opening late is not a reconnect"
    assert log == ["lost: no default input device", "restored"]


def test_backoff_resets_once_frames_flow_again() -> None:
    time = FakeTime()
    plan: list[FakeSource | BaseException] = [
        FakeSource(1, AudioError("a")), AudioError("b"), AudioError("c"),
        FakeSource(1, AudioError("d")), AudioError("e"), FakeSource(None),
    ]  # fmt: skip
    source, _, _ = make(plan, time)
    run(take(source, 3))
    assert time.sleeps == [0.5, 1.0, 2.0, 0.5, 1.0]
    assert source.reconnects == 2


def test_gives_up_after_exit_after_s_so_systemd_restarts_it() -> None:
    time = FakeTime()
    plan: list[FakeSource | BaseException] = [FakeSource(2)]
    plan += [AudioError("unplugged")] * 20
    source, _, log = make(plan, time, exit_after_s=5.0)
    with pytest.raises(AudioError) as caught:
        run(take(source, 100))
    assert time.sleeps == [0.5, 1.0, 2.0, 1.5], "the last wait stops at the limit"
    assert "no audio for 5.0 s" in caught.value.message and "unplugged" in caught.value.message
    assert caught.value.fix and "arecord -l" in caught.value.fix
    assert caught.value.exit_code != 0
    assert log == [f"lost: {STOPPED_REASON}"]


def test_exit_after_zero_gives_up_at_the_first_loss() -> None:
    time = FakeTime()
    source, _, _ = make([FakeSource(2, OSError("EIO"))], time, exit_after_s=0.0)
    with pytest.raises(AudioError):
        run(take(source, 100))
    assert time.sleeps == []


def test_other_errors_are_bugs_and_propagate() -> None:
    time = FakeTime()
    source, factory, _ = make([FakeSource(1, ValueError("bug"))], time)
    with pytest.raises(ValueError, match="bug"):
        run(take(source, 100))
    assert factory.made[0].closed and time.sleeps == []


def test_close_stops_the_stream_and_releases_the_source() -> None:
    time = FakeTime()
    source, factory, _ = make([FakeSource(None)], time)

    async def main() -> int:
        count = 0
        async with contextlib.aclosing(source.frames()) as frames:
            async for _ in frames:
                count += 1
                if count == 5:
                    source.close()
        return count

    assert run(main()) == 5
    assert factory.made[0].closed
    source.close()  # idempotent


def test_close_during_backoff_ends_without_reopening() -> None:
    time = FakeTime()
    calls: list[float] = []

    async def closing_sleep(seconds: float) -> None:
        calls.append(seconds)
        resilient.close()
        await asyncio.sleep(0)

    factory = Factory([FakeSource(1, AudioError("gone")), FakeSource(None)])
    resilient = ResilientSource(factory, sleep=closing_sleep, clock=time.clock)
    frames = run(take(resilient, 100))
    assert len(frames) == 1 and calls == [0.5]
    assert len(factory.made) == 1


def test_callbacks_are_optional_and_bad_backoff_is_rejected() -> None:
    time = FakeTime()
    factory = Factory([FakeSource(1, AudioError("x")), FakeSource(None)])
    source = ResilientSource(factory, sleep=time.sleep, clock=time.clock, max_backoff_s=0.7)
    assert len(run(take(source, 2))) == 2
    with pytest.raises(ValueError):
        ResilientSource(factory, initial_backoff_s=0.0)
    with pytest.raises(ValueError):
        ResilientSource(factory, initial_backoff_s=2.0, max_backoff_s=1.0)
    assert MAX_BACKOFF_S == 10.0
