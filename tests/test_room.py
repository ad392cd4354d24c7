"""The simulated room, the far-end reference's alignment and the echo canceller.

Unit tests on synthetic audio: what the sink plays comes back at the room's delay
with the room's gain, on the stream's clock; the reference the canceller gets
for a frame is what played over that frame; the real AEC3 takes the echo out.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from voiced.audio.echo_cancel import (
    FarEnd,
    MicCleaner,
    ResidualGate,
    estimate_delay_ms,
    make_processor,
)
from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame
from voiced.audio.room import (
    MIN_DELAY_MS,
    ROOMS,
    RoomSimulator,
    attach_room,
    load_room,
    synthetic_ir,
)
from voiced.audio.sinks import AlignedSink, MemoryWriter, SequentialSink
from voiced.errors import AudioError, ConfigError
from voiced.pipeline.mic_path import EchoCanceller, build_mic_path, choose_canceller
from voiced.settings import AudioSettings

SILENT_FRAME = bytes(FRAME_SAMPLES * 2)


def test_the_presets_cover_the_delays_reverberation_and_levels_asked_for() -> None:
    delays = sorted(spec.delay_ms for spec in ROOMS.values())
    assert delays[0] == 10 and delays[-1] == 150
    assert len({spec.rt60_ms for spec in ROOMS.values()}) >= 3
    assert max(spec.echo_gain_db for spec in ROOMS.values()) == 6.0
    assert any(spec.noise_dbfs is not None for spec in ROOMS.values())
    assert any(spec.noise_dbfs is None for spec in ROOMS.values())


@pytest.mark.parametrize("name", sorted(ROOMS))
def test_a_preset_is_the_same_every_time_with_its_delay_and_gain(name: str) -> None:
    spec = ROOMS[name]
    first, again = synthetic_ir(spec), synthetic_ir(spec)
    assert np.array_equal(first, again)
    room = load_room(name)
    assert room.delay_ms == pytest.approx(spec.delay_ms, abs=0.1)
    assert room.echo_gain_db == pytest.approx(spec.echo_gain_db, abs=0.01)
    # The tail decays: its last tenth holds a tiny share of the energy.
    energy = first.astype(np.float64) ** 2
    assert energy[-first.size // 10 :].sum() < 0.01 * energy.sum()


def _click_through_sink(room_name: str, click_at_frame: int, frames: int) -> np.ndarray:
    """A one-sample click played through an AlignedSink into the room: the mic signal."""
    sink = AlignedSink(MemoryWriter())
    simulator = attach_room(sink, room_name)
    heard = []
    for k in range(frames):
        frame = simulator.mix(AudioFrame(SILENT_FRAME, k * FRAME_SAMPLES))
        heard.append(np.frombuffer(frame.pcm, dtype="<i2"))
        sink.tick(FRAME_SAMPLES)  # as Assistant.feed does, before the frame is heard
        if k == click_at_frame:  # a reply made while frame k is heard
            click = np.zeros(FRAME_SAMPLES, dtype="<i2")
            click[0] = 20000
            sink.enqueue(click.tobytes(), PIPELINE_RATE_HZ)
    return np.concatenate(heard)


@pytest.mark.parametrize("name", ["desk", "hall"])
def test_what_the_sink_plays_comes_back_at_the_rooms_delay_on_the_stream_clock(
    name: str,
) -> None:
    """Enqueued during frame 5, the click plays at the start of frame 6 (sample 960);
    the room returns it delay_ms later, the direct path the loudest tap."""
    mic = _click_through_sink(name, click_at_frame=5, frames=200)
    played_at = 6 * FRAME_SAMPLES
    delay = ROOMS[name].delay_ms * PIPELINE_RATE_HZ // 1000
    assert not mic[: played_at + delay].any(), "nothing before the direct path"
    assert int(np.argmax(np.abs(mic))) == played_at + delay


def test_a_room_needs_the_time_aligned_sink_and_a_known_name() -> None:
    with pytest.raises(AudioError, match="realtime"):
        attach_room(SequentialSink(MemoryWriter()), "desk")
    with pytest.raises(AudioError, match="unknown room"):
        load_room("ballroom")


def _write_ir(path: Path, samples: np.ndarray, rate_hz: int = 48_000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(samples.astype("<i2").tobytes())


def test_an_impulse_response_wav_is_resampled_and_kept_after_the_sound_cards_buffer(
    tmp_path: Path,
) -> None:
    ir = np.zeros(4800, dtype=np.int16)
    ir[48] = 16000  # 1 ms: sooner than a sound card can bring anything back
    ir[480] = 4000
    path = tmp_path / "closet.wav"
    _write_ir(path, ir)
    room = load_room(str(path))
    assert room.name == "closet"
    assert room.delay_ms >= MIN_DELAY_MS
    silent = tmp_path / "silent.wav"
    _write_ir(silent, np.zeros(480, dtype=np.int16))
    with pytest.raises(AudioError, match="silent"):
        load_room(str(silent))
    with pytest.raises(AudioError):
        load_room(str(tmp_path / "missing.wav"))


def test_the_room_adds_its_noise_at_its_level() -> None:
    simulator = RoomSimulator(load_room("living"))  # -50 dBFS
    mic = np.concatenate([
        np.frombuffer(simulator.mix(AudioFrame(SILENT_FRAME, k * FRAME_SAMPLES)).pcm, "<i2")
        for k in range(300)
    ])  # fmt: skip
    level_dbfs = 20 * np.log10(np.sqrt(np.mean(mic.astype(np.float64) ** 2)) / 32768)
    assert level_dbfs == pytest.approx(-50, abs=1.5)


def test_the_far_end_for_a_frame_is_what_played_over_that_frame() -> None:
    far_end = FarEnd(keep_s=1.0)
    sink = AlignedSink(MemoryWriter())
    sink.taps.append(far_end.played)
    tone = (np.arange(3 * FRAME_SAMPLES) % 100 * 100).astype("<i2")
    sink.tick(FRAME_SAMPLES)  # frame 0: silence
    sink.enqueue(tone.tobytes(), PIPELINE_RATE_HZ)
    for _ in range(5):
        sink.tick(FRAME_SAMPLES)
    assert not far_end.read(0, FRAME_SAMPLES).any()
    assert np.array_equal(far_end.read(FRAME_SAMPLES, 3 * FRAME_SAMPLES), tone)
    assert not far_end.read(4 * FRAME_SAMPLES, FRAME_SAMPLES).any()
    assert not far_end.read(100 * FRAME_SAMPLES, FRAME_SAMPLES).any(), "not played yet"
    for _ in range(200):  # two seconds later the ring has moved on
        sink.tick(FRAME_SAMPLES)
    assert not far_end.read(FRAME_SAMPLES, 3 * FRAME_SAMPLES).any()


def _noise(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * PIPELINE_RATE_HZ)) * 3000).astype("<i2")


@pytest.mark.parametrize("name", ["kitchen", "hall"])
def test_the_delay_estimate_finds_the_rooms_delay(name: str) -> None:
    simulator = RoomSimulator(load_room(name))
    far = _noise(2.0)
    mic = []
    for k in range(far.size // FRAME_SAMPLES):
        block = far[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]
        mic.append(np.frombuffer(simulator.mix(AudioFrame(SILENT_FRAME, k * FRAME_SAMPLES)).pcm,
                                 "<i2"))  # fmt: skip
        simulator.played(k * FRAME_SAMPLES, block)
    found = estimate_delay_ms(np.concatenate(mic), far)
    assert found is not None
    assert found[0] == pytest.approx(ROOMS[name].delay_ms, abs=1.0)
    assert estimate_delay_ms(np.concatenate(mic), np.zeros_like(far)) is None


def test_the_real_canceller_takes_most_of_the_echo_out() -> None:
    """WebRTC AEC3 on a room's echo of noise: after two seconds of learning the
    cleaned signal is at least 15 dB below the echo (34 dB and more is usual)."""
    simulator = RoomSimulator(load_room("kitchen"))
    far_end = FarEnd()
    cleaner = MicCleaner(make_processor(echo_cancel=True, noise_suppression=False), far_end,
                         echo_cancel=True)  # fmt: skip
    far = _noise(5.0)
    echo_power = cleaned_power = 0.0
    for k in range(far.size // FRAME_SAMPLES):
        start = k * FRAME_SAMPLES
        mic = simulator.mix(AudioFrame(SILENT_FRAME, start))
        block = far[start : start + FRAME_SAMPLES]
        simulator.played(start, block)
        far_end.played(start, block)
        clean = cleaner.clean(mic.pcm, start)
        if start >= 2 * PIPELINE_RATE_HZ:
            echo_power += float(np.sum(np.frombuffer(mic.pcm, "<i2").astype(np.float64) ** 2))
            cleaned_power += float(np.sum(np.frombuffer(clean.pcm, "<i2").astype(np.float64) ** 2))
    assert 10 * np.log10(echo_power / max(cleaned_power, 1.0)) > 15
    assert cleaner.delay_ms == pytest.approx(40, abs=1.0)


def test_the_residual_gate_learns_the_residual_and_lets_louder_frames_through() -> None:
    gate = ResidualGate()
    far = np.full(FRAME_SAMPLES, 3000, dtype="<i2")  # about 70 dB
    assert gate.update(np.zeros(FRAME_SAMPLES, "<i2"), 60.0) == (False, True), "no echo about"
    for _ in range(1000):  # residual 40 dB under the far end
        gate.update(far, 30.0 + 0.5)
    assert gate.residual_db < -30
    assert gate.update(far, 31.0) == (True, False)
    assert gate.update(far, 65.0) == (True, True)
    silent = np.zeros(FRAME_SAMPLES, "<i2")
    for _ in range(50):  # after the far end stops, the room still rings for a while
        possible, _ = gate.update(silent, 20.0)
    assert possible is True
    for _ in range(100):
        possible, _ = gate.update(silent, 20.0)
    assert possible is False


def test_echo_cancel_modes_resolve_or_say_why() -> None:
    on_file = choose_canceller(AudioSettings(echo_cancel="auto"), sink_has_timeline=True)
    assert on_file.canceller is EchoCanceller.OURS
    speaker = choose_canceller(AudioSettings(echo_cancel="auto"), sink_has_timeline=False)
    assert speaker.canceller is EchoCanceller.NONE and "auto:" in speaker.reason
    with pytest.raises(ConfigError, match="echo_cancel"):
        choose_canceller(AudioSettings(echo_cancel="on"), sink_has_timeline=False)
    device = choose_canceller(AudioSettings(echo_cancel="device"), sink_has_timeline=False)
    assert device.canceller is EchoCanceller.DEVICE
    off = choose_canceller(AudioSettings(echo_cancel="off"), sink_has_timeline=True)
    assert off.canceller is EchoCanceller.NONE


class _CardSink:
    """Stands in for a sound-card sink: all the mic path looks at is its taps."""

    def __init__(self) -> None:
        self.played_taps: list[object] = []


def test_a_sound_card_speaker_is_cancelled_only_with_a_sound_card_microphone() -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        card = _CardSink()
        path = build_mic_path(AudioSettings(), card, executor, microphone="hw:CARD=USB,DEV=0")
        assert path.choice.canceller is EchoCanceller.OURS and len(card.played_taps) == 1
        assert "sound card's clock" in path.choice.reason
        heard_from_file = _CardSink()
        path = build_mic_path(AudioSettings(), heard_from_file, executor, microphone=None)
        assert path.choice.canceller is EchoCanceller.NONE and heard_from_file.played_taps == []
        assert "a file or stdin is heard" in path.choice.reason
        with pytest.raises(ConfigError, match="a file or stdin is heard"):
            build_mic_path(AudioSettings(echo_cancel="on"), _CardSink(), executor)
        named = build_mic_path(AudioSettings(), _CardSink(), executor,
                               microphone="echo-cancel-source")  # fmt: skip
        assert named.choice.canceller is EchoCanceller.DEVICE and named.cancels_echo


def test_the_mic_path_taps_the_sink_only_when_it_cancels() -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        sink = AlignedSink(MemoryWriter())
        path = build_mic_path(AudioSettings(echo_cancel="on"), sink, executor)
        assert path.choice.canceller is EchoCanceller.OURS and len(sink.taps) == 1
        assert not path.cancels_echo, "not before it has converged"
        assert path.status()["canceller"] == "voiced"
        quiet = AlignedSink(MemoryWriter())
        off = build_mic_path(AudioSettings(echo_cancel="off"), quiet, executor)
        assert off.cleaner is None and quiet.taps == []
        suppress = build_mic_path(AudioSettings(echo_cancel="off", noise_suppression=True),
                                  quiet, executor)  # fmt: skip
        assert suppress.cleaner is not None and not suppress.cleaner.echo_cancel


def test_doctor_says_who_cancels_the_echo() -> None:
    from voiced.service.doctor import check_echo_cancel
    from voiced.settings import Settings, replace_section

    def finding(**audio: object) -> tuple[str, str]:
        found = check_echo_cancel(replace_section(Settings(), "audio", **audio))
        return found.status, found.detail

    assert finding(output="out.wav") == ("ok", "voiced's (WebRTC AEC3, by stream position)")
    assert finding() == ("ok", "voiced's (WebRTC AEC3, by the sound card's clock)")
    assert finding(echo_cancel="device", input="hw:CARD=ArrayUAC10")[0] == "ok"
    assert finding(input="echo-cancel-source") == (
        "ok", "the microphone's own (echo-cancel-source)"), "auto takes its name's word"
    for mode, who in (("off", "none"), ("on", "voiced's too")):
        status, detail = finding(echo_cancel=mode, input="echo-cancel-source")
        assert status == "warn" and detail.startswith(who) and "looks echo-cancelled" in detail
    status, detail = finding(input="in.wav")  # a file heard, a speaker played: no clock
    assert status == "warn" and detail.startswith("none")
    assert finding(echo_cancel="on", input="in.wav")[0] == "fail"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--input", "in.wav", "--output", "o.wav", "--simulate-room", "ballroom"],
         "unknown room"),
        (["run", "--simulate-room", "kitchen"], "file input"),
        (["run", "--output", "o.wav", "--simulate-room", "/nonexistent/ir.wav"], "not found"),
        (["bench", "--room", "kitchen,nowhere"], "unknown room"),
        (["bench", "--room", "--wake"], "pick one"),
        (["bench", "--room", "--replies", "0"], "--replies"),
    ],
)  # fmt: skip
def test_bad_rooms_on_the_command_line_are_told_before_anything_loads(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from voiced.cli.main import main

    code = main([*argv, "--models-dir", str(tmp_path)])
    assert code != 0
    assert says in capsys.readouterr().err


def test_what_counts_as_the_users_speech_before_and_after_convergence() -> None:
    from voiced.audio.echo_cancel import CleanFrame
    from voiced.pipeline.mic_path import counts_as_speech

    learning = CleanFrame(SILENT_FRAME, 60.0, echo_possible=True, above_residual=True,
                          converged=False)  # fmt: skip
    assert not counts_as_speech(True, learning, over_reply=True), "no barge-in yet"
    assert counts_as_speech(True, learning, over_reply=False), "a command after the wake word"
    assert not counts_as_speech(True, learning, over_reply=False, idle=True), "the reply's tail"
    residual = CleanFrame(SILENT_FRAME, 40.0, True, above_residual=False, converged=True)
    assert not counts_as_speech(True, residual, over_reply=True)
    user = CleanFrame(SILENT_FRAME, 70.0, True, above_residual=True, converged=True)
    assert counts_as_speech(True, user, over_reply=True)
    assert not counts_as_speech(False, user, over_reply=True)
    assert counts_as_speech(True, None, over_reply=True), "no canceller: as before"
