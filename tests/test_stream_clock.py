"""The sound card's clock and the far end kept by it (logic only; the real sound
server path is tests/test_echo_soundcard.py)."""

from __future__ import annotations

import numpy as np
import pytest

from voiced.audio.echo_cancel import (
    DeviceFarEnd,
    MicCleaner,
    estimate_delay_ms,
    make_processor,
)
from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ
from voiced.audio.resample import to_pipeline_pcm
from voiced.audio.stream_clock import StreamClock

RATE_HZ = 48_000
BLOCK = 960  # 20 ms at 48 kHz


def test_blocks_follow_the_sample_count_not_the_jitter_of_the_reports() -> None:
    clock = StreamClock(RATE_HZ)
    assert clock.place(100.0, BLOCK) == 100.0
    assert clock.place(100.0 + 0.020 + 0.004, BLOCK) == pytest.approx(100.020)
    assert clock.place(100.0 + 0.040 - 0.003, BLOCK) == pytest.approx(100.040)
    assert clock.breaks == 1


def test_a_report_far_from_the_count_is_a_break_and_no_report_is_no_time() -> None:
    clock = StreamClock(RATE_HZ)
    clock.place(10.0, BLOCK)
    assert clock.place(10.5, BLOCK) == 10.5, "dropped blocks: placed afresh"
    assert clock.breaks == 2
    assert clock.place(0.0, BLOCK) is None
    assert clock.place(11.0, BLOCK) == 11.0
    with pytest.raises(ValueError):
        StreamClock(0)


def _noise(seconds: float, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE_HZ)) * 3000).astype(np.int16)


def test_the_far_end_is_read_where_the_clock_says_it_played() -> None:
    far = DeviceFarEnd(lead_ms=0)
    played = np.full(RATE_HZ, 8000, dtype=np.int16)  # one second of a constant level
    start_s = 1000.0
    for at in range(0, played.size, BLOCK):
        far.played(start_s + at / RATE_HZ, played[at : at + BLOCK], RATE_HZ)
    index = far.reference_start(start_s + 0.5)
    assert np.all(np.abs(far.read(index, FRAME_SAMPLES).astype(int) - 8000) < 100)
    before = far.reference_start(start_s - 0.5)
    assert not far.read(before, FRAME_SAMPLES).any(), "nothing played then"
    assert far.move_by_ms(20.0) and far.lead_ms == 20.0
    assert far.reference_start(start_s + 0.5) == index - 320
    assert far.move_by_ms(-10_000.0) and far.lead_ms == DeviceFarEnd.LEAD_RANGE_MS[0]
    assert not far.move_by_ms(-1.0), "already at the end of its range"


def test_an_echo_before_its_reference_is_found_with_its_sign() -> None:
    far = _noise(2.0)[::3]  # 16 kHz noise
    early = np.concatenate([far[480:], np.zeros(480, dtype=np.int16)])  # 30 ms early
    found = estimate_delay_ms(early, far, min_delay_ms=-100)
    assert found is not None and found[0] == pytest.approx(-30.0, abs=0.1)
    only_after = estimate_delay_ms(early, far)
    assert only_after is None or only_after[0] >= 0, "not looked for by default"


def test_the_canceller_moves_a_far_end_its_echo_came_before_and_then_cancels_it() -> None:
    """The reported times put the echo 60 ms before its reference (as PulseAudio's
    monitor does): AEC3 cannot cancel that; the cleaner moves the far end once (two
    estimates agreeing) and the echo is cancelled from then on."""
    far = DeviceFarEnd(lead_ms=0)
    speaker = _noise(12.0)
    start_s = 50.0
    early = 60 * PIPELINE_RATE_HZ // 1000
    # What the microphone hears: the speaker's audio at 16 kHz, 60 ms before the
    # time it was reported played, at half its level.
    played_16k = np.frombuffer(to_pipeline_pcm(speaker, RATE_HZ), "<i2").astype(np.int32)
    echo = (np.concatenate([played_16k[early:], np.zeros(early, np.int32)]) // 2).astype(np.int16)

    def remake() -> object:
        return make_processor(echo_cancel=True, noise_suppression=False)

    cleaner = MicCleaner(remake(), far, echo_cancel=True, remake=remake)
    level_in = level_out = 0.0
    fed = 0
    for at in range(0, echo.size - FRAME_SAMPLES, FRAME_SAMPLES):
        # The sink's callback runs ahead of the microphone, by 200 ms here.
        while fed < speaker.size and fed / RATE_HZ < at / PIPELINE_RATE_HZ + 0.2:
            far.played(start_s + fed / RATE_HZ, speaker[fed : fed + BLOCK], RATE_HZ)
            fed += BLOCK
        frame = echo[at : at + FRAME_SAMPLES]
        clean = cleaner.clean(frame.tobytes(), far.reference_start(start_s + at / PIPELINE_RATE_HZ))
        if at >= 8 * PIPELINE_RATE_HZ:
            level_in += float(np.sum(frame.astype(np.float64) ** 2))
            level_out += float(np.sum(np.frombuffer(clean.pcm, "<i2").astype(np.float64) ** 2))
    assert cleaner.realignments == 1
    assert cleaner.delay_ms is not None
    assert cleaner.delay_ms + far.lead_ms == pytest.approx(-60.0, abs=1.0), "the echo's place"
    assert 10 * np.log10(level_in / level_out) > 15.0


def test_the_far_end_is_not_moved_past_what_the_sink_has_handed_over() -> None:
    far = DeviceFarEnd(lead_ms=0)
    for k in range(10):  # 200 ms handed over
        far.played(10.0 + k * 0.02, np.full(BLOCK, 1000, np.int16), RATE_HZ)
    far.read(far.reference_start(10.0), FRAME_SAMPLES)  # the microphone is at 10.0 s
    assert far.move_by_ms(-500.0)
    ahead = far.reference_start(10.0) + FRAME_SAMPLES
    assert far.read(ahead - FRAME_SAMPLES, FRAME_SAMPLES).any(), "still within what played"


def test_after_lost_samples_the_next_block_is_placed_by_its_report() -> None:
    clock = StreamClock(RATE_HZ)
    clock.place(10.0, BLOCK)
    clock.reset()
    assert clock.place(10.04, BLOCK) == 10.04, "a dropped 20 ms block, under the break"


def test_a_replys_tail_reaches_the_far_end_when_the_next_run_starts() -> None:
    """soxr holds the last ~30 ms of a run back; the next run flushes it in."""
    far = DeviceFarEnd(lead_ms=0)
    reply = np.full(RATE_HZ // 2, 8000, dtype=np.int16)
    for at in range(0, reply.size, BLOCK):
        far.played(100.0 + at / RATE_HZ, reply[at : at + BLOCK], RATE_HZ)
    tail = far.reference_start(100.5) - FRAME_SAMPLES
    assert not far.read(tail, FRAME_SAMPLES).any(), "held back by the resampler"
    far.played(102.0, np.zeros(BLOCK, dtype=np.int16), RATE_HZ)  # the next reply
    assert np.all(np.abs(far.read(tail, FRAME_SAMPLES - 16).astype(int) - 8000) < 200)


def test_a_clock_set_back_starts_the_far_end_afresh() -> None:
    far = DeviceFarEnd(lead_ms=0)
    tone = np.full(BLOCK, 8000, dtype=np.int16)
    for k in range(10):
        far.played(1000.0 + k * 0.02, tone, RATE_HZ)
    for k in range(10):  # the wall clock was set back a minute
        far.played(940.0 + k * 0.02, tone, RATE_HZ)
    heard = far.read(far.reference_start(940.1), FRAME_SAMPLES)
    assert np.all(np.abs(heard.astype(int) - 8000) < 200)
