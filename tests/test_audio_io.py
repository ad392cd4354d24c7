"""Audio edges: WAV/stdin sources, realtime pacing, aligned and sequential sinks, specs."""

from __future__ import annotations

import asyncio
import io
import os
import random
import struct
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voiced.audio.format import FRAME_SAMPLES, AudioFrame
from voiced.audio.resample import StreamResampler, from_pipeline_pcm, to_pipeline_pcm
from voiced.audio.sinks import (
    AlignedSink,
    AlignedWavSink,
    SequentialSink,
    SequentialWavSink,
    null_sink,
    open_sink,
    raw_stdout_sink,
)
from voiced.audio.sources import (
    RawStdinSource,
    SilenceSource,
    SoundcardSource,
    WavFileSource,
    open_source,
)
from voiced.errors import AudioError

TIMEOUT_S = 10.0


# ---------------------------------------------------------------- helpers


def tone(freq_hz: float, rate_hz: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    return (amp * np.cos(2 * np.pi * freq_hz * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int, width: int) -> Path:
    """float samples (n,) or (n, ch) in [-1, 1] as integer PCM via the stdlib."""
    data = samples if samples.ndim == 2 else samples[:, None]
    if width == 1:
        raw = np.clip(data * 128 + 128, 0, 255).astype(np.uint8).tobytes()
    elif width == 3:
        ints = np.clip(data * 8388608, -8388608, 8388607).astype("<i4")
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype, scale = {2: ("<i2", 32767), 4: ("<i4", 2147483647)}[width]
        raw = (data.astype(np.float64) * scale).astype(dtype).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate_hz)
        w.writeframes(raw)
    return path


def write_riff(path: Path, tag: int, channels: int, rate_hz: int, bits: int, data: bytes) -> Path:
    """A hand-made WAV (for formats the stdlib writer cannot produce)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate_hz, rate_hz * align, align, bits)
    if tag == 0xFFFE:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", 1) + guid_tail
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk to skip
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def pcm_array(frames: list[AudioFrame]) -> np.ndarray:
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")


def peak_hz(samples: np.ndarray, rate_hz: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


def collect(source: Any) -> list[AudioFrame]:
    async def gather() -> list[AudioFrame]:
        return [frame async for frame in source.frames()]

    async def main() -> list[AudioFrame]:
        return await asyncio.wait_for(gather(), TIMEOUT_S)

    return asyncio.run(main())


def read_wav_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


# ---------------------------------------------------------------- WAV source


def test_wav_16k_mono_passes_through_exactly(tmp_path: Path) -> None:
    samples = tone(440, 16000, 1.0)
    path = write_wav(tmp_path / "a.wav", samples, 16000, 2)
    frames = collect(WavFileSource(path, realtime=False))
    assert len(frames) == 100
    assert [f.start_sample for f in frames] == [i * FRAME_SAMPLES for i in range(100)]
    assert all(f.num_samples == FRAME_SAMPLES for f in frames)
    expected = (samples.astype(np.float64) * 32767).astype("<i2")
    assert np.array_equal(pcm_array(frames), expected)


def test_wav_48k_stereo_is_resampled_and_keeps_pitch(tmp_path: Path) -> None:
    stereo = np.stack([tone(440, 48000, 1.0), tone(440, 48000, 1.0, amp=0.3)], axis=1)
    frames = collect(WavFileSource(write_wav(tmp_path / "s.wav", stereo, 48000, 2), False))
    out = pcm_array(frames)
    assert abs(len(out) - 16000) <= FRAME_SAMPLES
    assert peak_hz(out[:16000]) == pytest.approx(440, abs=2)
    assert np.abs(out[4000:12000]).max() == pytest.approx(0.4 * 32768, rel=0.05)  # mean of channels


@pytest.mark.parametrize(("width", "rate_hz"), [(1, 8000), (3, 44100), (4, 22050)])
def test_wav_int_widths(tmp_path: Path, width: int, rate_hz: int) -> None:
    path = write_wav(tmp_path / f"w{width}.wav", tone(440, rate_hz, 0.5), rate_hz, width)
    out = pcm_array(collect(WavFileSource(path, False)))
    assert abs(len(out) - 8000) <= FRAME_SAMPLES
    assert peak_hz(out[:8000]) == pytest.approx(440, abs=3)


def test_wav_extensible_24bit_multichannel_and_float(tmp_path: Path) -> None:
    three = np.stack([tone(440, 32000, 0.5)] * 3, axis=1)
    ints = (three.astype(np.float64) * 8388607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    ext = write_riff(tmp_path / "ext.wav", 0xFFFE, 3, 32000, 24, ints.tobytes())
    flt = write_riff(tmp_path / "f.wav", 3, 1, 16000, 32, tone(440, 16000, 0.5).tobytes())
    for path in (ext, flt):
        out = pcm_array(collect(WavFileSource(path, False)))
        assert abs(len(out) - 8000) <= FRAME_SAMPLES
        assert peak_hz(out[:8000]) == pytest.approx(440, abs=3)


def expect_audio_error(path: Path, *words: str) -> AudioError:
    with pytest.raises(AudioError) as info:
        collect(WavFileSource(path, False))
    text = info.value.render().lower()
    assert all(word in text for word in words), text
    assert info.value.fix
    return info.value


def test_wav_errors_are_clean(tmp_path: Path) -> None:
    expect_audio_error(tmp_path / "missing.wav", "not found")
    expect_audio_error(tmp_path, "directory")
    (tmp_path / "empty.wav").write_bytes(b"")
    expect_audio_error(tmp_path / "empty.wav", "is empty")
    (tmp_path / "text.wav").write_text("hello, this is not audio at all")
    expect_audio_error(tmp_path / "text.wav", "not a readable wav")
    expect_audio_error(write_wav(tmp_path / "zero.wav", np.zeros(0), 16000, 2), "no audio")
    alaw = write_riff(tmp_path / "alaw.wav", 6, 1, 8000, 8, bytes(800))
    expect_audio_error(alaw, "unsupported encoding", "ffmpeg")
    good = write_wav(tmp_path / "good.wav", tone(440, 16000, 0.1), 16000, 2).read_bytes()
    (tmp_path / "cut.wav").write_bytes(good[:30])
    expect_audio_error(tmp_path / "cut.wav", "wav")


def test_wav_too_long_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", tone(440, 16000, 2.0), 16000, 2)
    with pytest.raises(AudioError, match="limit"):
        collect(WavFileSource(path, False, max_duration_s=1.0))


def test_wav_fuzzed_headers_never_raise_anything_but_audio_error(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "g.wav", tone(440, 16000, 0.05), 16000, 2).read_bytes()
    ext = write_riff(tmp_path / "e.wav", 0xFFFE, 2, 8000, 16, bytes(1600)).read_bytes()
    rng = random.Random(1234)
    path = tmp_path / "fuzz.wav"
    for _ in range(400):
        data = bytearray(rng.choice([good, ext]))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(0, 90)] = rng.randrange(256)
        path.write_bytes(bytes(data[: rng.choice([len(data), rng.randrange(len(data))])]))
        try:
            frames = collect(WavFileSource(path, False))
        except AudioError:
            continue
        assert all(f.num_samples == FRAME_SAMPLES for f in frames)


# ---------------------------------------------------------------- pacing


class FakeClock:
    """A monotonic clock that only moves when sleep() is awaited or advance() is called."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_realtime_wav_frames_follow_the_deadline_schedule(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", tone(440, 16000, 0.5), 16000, 2)
    clock = FakeClock()
    source = WavFileSource(path, realtime=True, clock=clock, sleep=clock.sleep)
    released: list[float] = []

    async def consume() -> None:
        async for frame in source.frames():
            released.append(clock.now - 100.0)
            if frame.start_sample == 10 * FRAME_SAMPLES:
                clock.advance(0.035)  # a slow consumer: 3.5 frames late

    asyncio.run(asyncio.wait_for(consume(), TIMEOUT_S))
    assert len(released) == 50
    for n, at in enumerate(released):
        deadline = n * 0.010
        if 11 <= n <= 13:  # behind schedule: released at once, no sleep
            assert at == pytest.approx(0.100 + 0.035)
        else:
            assert at == pytest.approx(deadline)  # never drifts
    assert len(clock.sleeps) == 49 - 3


def test_non_realtime_source_never_sleeps_on_the_clock(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", tone(440, 16000, 0.3), 16000, 2)
    clock = FakeClock()
    frames = collect(WavFileSource(path, realtime=False, clock=clock, sleep=clock.sleep))
    assert len(frames) == 30 and clock.sleeps == []


def test_silence_source_is_paced_and_closable() -> None:
    clock = FakeClock()
    source = SilenceSource(clock=clock, sleep=clock.sleep)

    async def take() -> list[AudioFrame]:
        out = []
        async for frame in source.frames():
            out.append(frame)
            if len(out) == 5:
                source.close()
        return out

    frames = asyncio.run(asyncio.wait_for(take(), TIMEOUT_S))
    assert len(frames) == 5 and not pcm_array(frames).any()
    assert clock.now == pytest.approx(100.04)
    # Woken once per 20 ms block, as a sound card would wake it, not per frame.
    assert clock.sleeps == pytest.approx([0.02, 0.02])


# ---------------------------------------------------------------- stdin


def test_raw_stdin_drops_odd_byte_and_pads_last_frame() -> None:
    pcm = np.arange(250, dtype="<i2").tobytes() + b"\x01"
    frames = collect(RawStdinSource(False, stream=io.BytesIO(pcm)))
    assert [f.start_sample for f in frames] == [0, 160]
    out = pcm_array(frames)
    assert np.array_equal(out[:250], np.arange(250)) and not out[250:].any()


def test_raw_stdin_reads_a_pipe_through_the_loop() -> None:
    read_fd, write_fd = os.pipe()
    pcm = np.arange(1600, dtype="<i2").tobytes()

    def producer() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(pcm), 333):
                w.write(pcm[i : i + 333])
                w.flush()

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd, "rb") as r:
        frames = collect(RawStdinSource(False, stream=r))
    thread.join(TIMEOUT_S)
    assert len(frames) == 10 and np.array_equal(pcm_array(frames), np.arange(1600))


# ---------------------------------------------------------------- sinks


def test_aligned_wav_sink_places_reply_on_the_input_timeline(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    sink = AlignedWavSink(path)
    reply = tone(440, 22050, 0.2)
    reply_pcm = (reply * 32767).astype("<i2").tobytes()
    for frame in range(100):
        sink.tick(FRAME_SAMPLES)
        if frame == 30:
            sink.enqueue(reply_pcm, 22050)
    assert not sink.is_playing
    sink.close()
    out, rate = read_wav_samples(path)
    assert rate == 16000 and len(out) == 100 * FRAME_SAMPLES
    onset = 31 * FRAME_SAMPLES
    assert sink.first_audio_sample == [onset] and sink.onset_samples == [onset]
    assert not out[:onset].any()
    assert abs(int(out[onset])) > 8000  # a cosine starts at its peak
    audible = np.flatnonzero(np.abs(out) > 100)
    assert audible[0] == onset and abs(audible[-1] + 1 - (onset + 3200)) <= 2
    assert peak_hz(out[onset : onset + 3200]) == pytest.approx(440, abs=6)
    assert sink.played_ms == pytest.approx(200, abs=0.2)


def test_aligned_sink_clear_stops_at_next_tick_and_tail_plays_on_ticks() -> None:
    stream = io.BytesIO()
    sink = raw_stdout_sink(aligned=True, stream=stream)
    assert isinstance(sink, AlignedSink)
    one_second = (np.ones(16000) * 1000).astype("<i2").tobytes()
    for frame in range(40):
        sink.tick(FRAME_SAMPLES)
        if frame == 9:
            sink.enqueue(one_second, 16000)
        if frame == 19:
            assert sink.clear() == 900
    sink.enqueue(one_second[:6400], 16000)  # after the input ended: 200 ms tail
    for _ in range(20):  # the daemon's silence ticks
        sink.tick(FRAME_SAMPLES)
    out = np.frombuffer(stream.getvalue(), dtype="<i2")
    assert len(out) == 60 * FRAME_SAMPLES
    assert not out[: 10 * 160].any() and (out[10 * 160 : 20 * 160] == 1000).all()
    assert not out[20 * 160 : 40 * 160].any() and (out[40 * 160 :] == 1000).all()
    assert sink.onset_samples == [1600, 6400] and sink.dropped_ms == 900


def test_aligned_sink_counts_back_to_back_segments_as_one_onset() -> None:
    sink = null_sink(aligned=True)
    assert isinstance(sink, AlignedSink)
    sink.enqueue(bytes(2 * 250), 16000)  # ends mid-tick...
    sink.enqueue((np.ones(250) * 1000).astype("<i2").tobytes(), 16000)  # ...this follows on
    for _ in range(5):
        sink.tick(FRAME_SAMPLES)
    assert sink.first_audio_sample == [0, 250] and sink.onset_samples == [0]
    sink.enqueue(bytes(2 * 100), 16000)  # after a silent stretch: a new onset
    sink.tick(FRAME_SAMPLES)
    assert sink.onset_samples == [0, 5 * FRAME_SAMPLES]


def test_aligned_sink_drained_resolves_when_ticks_play_it_out() -> None:
    sink = null_sink(aligned=True)

    async def main() -> None:
        await asyncio.wait_for(sink.drained(), TIMEOUT_S)  # idle: at once
        sink.enqueue(bytes(3200), 16000)  # 100 ms
        waiter = asyncio.ensure_future(sink.drained())
        for _ in range(9):
            sink.tick(FRAME_SAMPLES)
            await asyncio.sleep(0)
            assert not waiter.done() and sink.is_playing
        sink.tick(FRAME_SAMPLES)
        await asyncio.wait_for(waiter, TIMEOUT_S)
        assert sink.played_ms == 100 and not sink.is_playing

    asyncio.run(main())


def test_sequential_wav_sink_layout(tmp_path: Path) -> None:
    path = tmp_path / "seq.wav"
    sink = SequentialWavSink(path)
    sink.tick(160)  # no-op
    sink.enqueue((np.ones(1600) * 500).astype("<i2").tobytes(), 16000)
    sink.enqueue((np.ones(4800) * -500).astype("<i2").tobytes(), 48000)
    assert not sink.is_playing and sink.clear() == 0
    asyncio.run(asyncio.wait_for(sink.drained(), TIMEOUT_S))
    sink.close()
    sink.close()
    out, _ = read_wav_samples(path)
    assert sink.first_audio_sample == [0, 1600 + 4800]
    assert len(out) == 1600 + 4800 + 1600
    assert (out[:1600] == 500).all() and not out[1600:6400].any()
    assert np.abs(out[6500:7900] + 500).max() <= 2


def test_wav_sink_file_is_valid_before_close(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    sink = AlignedWavSink(path)
    for _ in range(100):  # 1 s: past the writer's 0.5 s flush
        sink.tick(FRAME_SAMPLES)
    out, _ = read_wav_samples(path)
    assert len(out) >= 8000
    sink.close()
    assert len(read_wav_samples(path)[0]) == 16000


def test_resample_helpers_round_trip() -> None:
    pcm = to_pipeline_pcm((tone(300, 44100, 0.5) * 32767).astype(np.int16), 44100)
    assert abs(len(pcm) // 2 - 8000) <= 1
    up = from_pipeline_pcm(pcm, 48000)
    assert abs(len(up) // 2 - 24000) <= 3
    stream = StreamResampler(48000, 2)
    blocks = np.stack([tone(300, 48000, 1.0)] * 2, axis=1)
    out = b"".join(stream.process(blocks[i : i + 960]) for i in range(0, 48000, 960))
    out += stream.flush()
    assert abs(len(out) // 2 - 16000) <= 2
    assert peak_hz(np.frombuffer(out, dtype="<i2")[:16000]) == pytest.approx(300, abs=2)


# ---------------------------------------------------------------- specs


def test_open_source_specs(tmp_path: Path) -> None:
    wav = open_source(str(tmp_path / "in.WAV"), realtime=True)
    assert isinstance(wav, WavFileSource) and wav.realtime
    assert isinstance(open_source("-", False), RawStdinSource)
    assert isinstance(open_source("null", False), SilenceSource)
    by_name = open_source("device:USB Mic", True)
    assert isinstance(by_name, SoundcardSource) and by_name.device == "USB Mic"
    assert isinstance(open_source(None, True), SoundcardSource)
    assert open_source("device:3", True).device == 3  # type: ignore[attr-defined]
    for bad in ("device:", "song.mp3"):
        with pytest.raises(AudioError):
            open_source(bad, True)


def test_open_sink_specs(tmp_path: Path) -> None:
    aligned = open_sink(str(tmp_path / "a.wav"), realtime=True)
    sequential = open_sink(str(tmp_path / "b.wav"), realtime=False)
    assert isinstance(aligned, AlignedWavSink) and isinstance(sequential, SequentialWavSink)
    aligned.close()
    sequential.close()
    assert isinstance(open_sink("null", True), AlignedSink)
    assert isinstance(open_sink("null", False), SequentialSink)
    assert isinstance(open_sink("-", False), SequentialSink)
    with pytest.raises(AudioError):
        open_sink("out.ogg", True)
    with pytest.raises(AudioError):
        open_sink(str(tmp_path / "no" / "such" / "dir.wav"), True)
