"""Sound-card edges with a fake sounddevice module: devices, source, sink, PortAudio missing."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.test_audio_io import TIMEOUT_S, collect, pcm_array, peak_hz, tone
from voiced.audio import devices, soundcard
from voiced.audio.devices import DeviceInfo, format_device_table, list_devices
from voiced.audio.format import AudioFrame
from voiced.audio.sinks import SoundcardSink, open_sink
from voiced.audio.sources import SoundcardSource, open_source
from voiced.errors import AudioError


def test_list_devices_without_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise OSError("PortAudio library not found")

    monkeypatch.setattr("voiced.audio.devices.importlib.import_module", missing)
    with pytest.raises(AudioError) as info:
        list_devices()
    assert "libportaudio2" in (info.value.fix or "")
    open_source(None, True).close()  # a microphone source opens nothing until iterated
    with pytest.raises(AudioError, match="PortAudio"):
        open_sink(None, True)


def test_list_devices_on_this_machine_is_clean() -> None:
    try:
        found = list_devices()
    except AudioError:
        return
    assert all(isinstance(dev, DeviceInfo) for dev in found)
    assert isinstance(format_device_table(found), str)


class FakeStream:
    def __init__(self, *, callback: Any, channels: int, samplerate: int, **_: Any) -> None:
        self.callback = callback
        self.channels = channels
        self.samplerate = samplerate
        self.started = self.closed = False
        FAKE_STREAMS.append(self)
        STREAM_OPENED.set()

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


FAKE_STREAMS: list[FakeStream] = []
STREAM_OPENED = threading.Event()
STATUS_OK = SimpleNamespace(input_overflow=False, output_underflow=False)


def fake_sounddevice() -> SimpleNamespace:
    entries = [
        {"name": "USB Mic", "max_input_channels": 2, "max_output_channels": 0,
         "default_samplerate": 48000.0, "hostapi": 0},
        {"name": "Speaker", "max_input_channels": 0, "max_output_channels": 2,
         "default_samplerate": 44100.0, "hostapi": 0},
    ]  # fmt: skip
    return SimpleNamespace(
        query_devices=lambda: entries,
        query_hostapis=lambda: [{"name": "ALSA"}],
        default=SimpleNamespace(device=[0, 1]),
        PortAudioError=RuntimeError,
        InputStream=FakeStream,
        OutputStream=FakeStream,
    )


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    module = fake_sounddevice()
    FAKE_STREAMS.clear()
    STREAM_OPENED.clear()
    monkeypatch.setattr(devices, "load_sounddevice", lambda: module)
    monkeypatch.setattr(soundcard, "load_sounddevice", lambda: module)
    return module


def test_device_table_and_missing_device_lists_devices(fake_sd: SimpleNamespace) -> None:
    table = format_device_table(list_devices())
    assert "USB Mic (ALSA)" in table and "Speaker" in table
    with pytest.raises(AudioError) as info:
        collect(SoundcardSource("nonexistent"))
    assert "USB Mic" in info.value.message and "Speaker" not in info.value.message
    with pytest.raises(AudioError, match="Speaker"):
        SoundcardSink("USB Mic")


def test_soundcard_source_resamples_callback_blocks(fake_sd: SimpleNamespace) -> None:
    source = SoundcardSource(None, queue_blocks=100)
    stereo = np.stack([tone(440, 48000, 0.5)] * 2, axis=1)

    async def main() -> list[AudioFrame]:
        frames: list[AudioFrame] = []
        agen = source.frames()
        task = asyncio.ensure_future(_take(agen, frames, 45))
        await asyncio.wait_for(asyncio.to_thread(STREAM_OPENED.wait, TIMEOUT_S), TIMEOUT_S)
        stream = FAKE_STREAMS[0]
        assert stream.samplerate == 48000 and stream.channels == 1
        feeder = threading.Thread(target=_feed, args=(stream, stereo[:, :1]))
        feeder.start()
        await asyncio.wait_for(task, TIMEOUT_S)
        feeder.join(TIMEOUT_S)
        await agen.aclose()
        return frames

    frames = asyncio.run(main())
    assert [f.start_sample for f in frames] == [i * 160 for i in range(45)]
    assert peak_hz(pcm_array(frames)[1000:7000], 16000) == pytest.approx(440, abs=6)
    assert FAKE_STREAMS[0].closed and source.xruns == 0


async def _take(agen: Any, out: list[AudioFrame], count: int) -> None:
    while len(out) < count:
        out.append(await agen.__anext__())


def _feed(stream: FakeStream, data: np.ndarray) -> None:
    for i in range(0, len(data), 960):
        stream.callback(data[i : i + 960].copy(), 960, None, STATUS_OK)


def test_soundcard_source_counts_overflow_and_reports_stall(fake_sd: SimpleNamespace) -> None:
    source = SoundcardSource(0, queue_blocks=2, stall_timeout_s=0.05)

    async def main() -> None:
        agen = source.frames()
        first = asyncio.ensure_future(agen.__anext__())
        await asyncio.wait_for(asyncio.to_thread(STREAM_OPENED.wait, TIMEOUT_S), TIMEOUT_S)
        status = SimpleNamespace(input_overflow=True, output_underflow=False)
        block = np.zeros((960, 1), dtype=np.float32)
        for _ in range(5):  # the loop is not running meanwhile: the queue overflows
            FAKE_STREAMS[0].callback(block, 960, None, status)
        await asyncio.wait_for(first, TIMEOUT_S)
        with pytest.raises(AudioError, match="no audio"):
            await asyncio.wait_for(_take(agen, [], 1000), TIMEOUT_S)

    asyncio.run(main())
    assert source.xruns == 5 + 3


def test_soundcard_sink_plays_clears_and_drains(fake_sd: SimpleNamespace) -> None:
    sink = SoundcardSink(None)
    stream = FAKE_STREAMS[0]
    assert sink.rate_hz == 44100 and stream.started

    def pull(n: int) -> np.ndarray:
        out = np.full((n, stream.channels), 7, dtype=np.int16)
        stream.callback(out, n, None, STATUS_OK)
        return out[:, 0]

    async def main() -> None:
        sink.enqueue((np.ones(1600) * 1000).astype("<i2").tobytes(), 16000)  # 100 ms
        assert sink.is_playing
        waiter = asyncio.ensure_future(sink.drained())
        first = pull(2205)
        assert np.abs(first[100:2000] - 1000).max() < 50
        assert sink.clear() == pytest.approx(50, abs=1)
        assert not pull(441).any()
        await asyncio.wait_for(waiter, TIMEOUT_S)
        await asyncio.wait_for(sink.drained(), TIMEOUT_S)

    asyncio.run(main())
    sink.close()
    assert stream.closed and sink.played_ms == pytest.approx(50)


def test_a_device_plugged_in_later_is_found_once_no_stream_is_open(
    fake_sd: SimpleNamespace,
) -> None:
    """PortAudio reads its device list once; a miss re-reads it, but only while no
    stream is open (re-initialising PortAudio would end every stream)."""
    refreshed: list[str] = []
    late = {"name": "Jabra Speak", "max_input_channels": 1, "max_output_channels": 1,
            "default_samplerate": 16000.0, "hostapi": 0}  # fmt: skip

    def terminate() -> None:
        refreshed.append("terminate")

    def initialize() -> None:
        refreshed.append("initialize")
        fake_sd.query_devices().append(late)

    fake_sd._terminate, fake_sd._initialize = terminate, initialize
    sink = SoundcardSink("Speaker")  # a stream is open: no refresh
    with pytest.raises(AudioError, match="no input device 'Jabra'"):
        devices.find_device("Jabra", "input")
    assert refreshed == []
    sink.close()
    assert devices.find_device("Jabra", "input").name == "Jabra Speak"
    assert refreshed == ["terminate", "initialize"]
