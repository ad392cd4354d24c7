"""`voiced bench --wake` on a small set: what it counts, and its cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voiced.bench import wake_sets
from voiced.bench.wake import table, wake_bench
from voiced.settings import Settings

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture
def small_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two voices, two questions, four sentences and 10 s of music."""
    monkeypatch.setattr(wake_sets, "ESPEAK_VOICES", (("espeak en-us", "en-us", 165),))
    monkeypatch.setattr(wake_sets, "PIPER_SPEEDS", (("piper x1.0", 1.0),))
    monkeypatch.setattr(wake_sets, "QUESTIONS", ("what time is it?", "turn it up."))
    sentences = ["The kettle is on.", "Call my sister tonight.", "It might rain.", "Hello there."]
    monkeypatch.setattr(wake_sets, "speech_texts", lambda: sentences)
    monkeypatch.setattr(wake_sets, "MUSIC_S", 10)


def test_wake_bench_counts_detections_and_false_wakes(
    small_sets: None, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    piper = models_dir / "piper-en_US-joe-medium" / "voice.onnx"
    rows = wake_bench(Settings(), models_dir, piper, tmp_path / "sets", say=lambda _: None)
    by_key = {(row.engine, row.model): row for row in rows}
    assert len(by_key) == 4 + 5 + 4  # micro, open, both
    for row in rows:
        assert row.turns == 4  # 2 voices x 2 questions
        assert row.by_group["noisy"][1] == 1  # every third turn
        assert row.speech_hours > 0 and row.music_hours > 0
    jarvis = by_key["open", "hey_jarvis"]
    assert jarvis.by_group["piper"] == [2, 2]
    assert jarvis.false_speech == 0 and jarvis.false_music == 0
    assert len(jarvis.delay_ms) == jarvis.detected
    both = by_key["both", "hey_jarvis"]
    assert both.detected >= max(jarvis.detected, by_key["micro", "hey_jarvis"].detected)
    assert "| open | hey_jarvis |" in table(rows)
    assert "across a room (living)" in table(rows, "living")
    for row in rows:
        assert row.by_group["room"][1] == 4, "the same turns, heard across the room"
    assert jarvis.by_group["room"][0] >= 1, "the Piper turns stay heard in the room"
    # The second run reads the sets back instead of synthesising them again.
    monkeypatch.setattr(wake_sets, "speakers", lambda _: pytest.fail("synthesised again"))
    again = wake_bench(Settings(), models_dir, piper, tmp_path / "sets", say=lambda _: None)
    assert [r.detected for r in again] == [r.detected for r in rows]


def test_noise_is_mixed_at_the_asked_snr() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    # A square wave: its louder half (what speech is measured by) is all of it.
    tone = (np.sign(np.sin(np.arange(16_000) / 5)) * 8000).astype("<i2")
    noisy = np.frombuffer(wake_sets.with_noise(tone.tobytes(), rng, 20.0), dtype="<i2")
    noise = noisy.astype(np.float64) - tone
    snr = 20 * np.log10(np.sqrt(np.mean(tone.astype(np.float64) ** 2)) / np.sqrt(np.mean(noise**2)))
    assert 19.0 < snr < 21.5


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--wake", "--qa"], "--wake and --qa are two benchmarks"),
        (["--wake-cache", "/tmp/x"], "--wake-cache goes with --wake"),
        (["--wake-room", "hall"], "--wake-room goes with --wake"),
    ],
)
def test_cli_wake_usage_errors(args: list[str], says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "voiced", "bench", *args],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_set_heard_across_a_room_keeps_its_level_and_times() -> None:
    import numpy as np

    from voiced.audio.room import load_room

    rng = np.random.default_rng(1)
    speech = (rng.standard_normal(48_000) * 3000).astype("<i2").tobytes()
    turn = wake_sets.Turn("x", False, 0.0, 500.0, 1000.0)
    spoken = wake_sets.SpokenSet("hey_jarvis", speech, (turn,))
    heard = wake_sets.in_room(spoken, load_room("hall"))
    assert heard.name == "hey_jarvis@hall" and heard.turns == spoken.turns
    before = np.frombuffer(speech, dtype="<i2").astype(np.float64)
    after = np.frombuffer(heard.pcm, dtype="<i2").astype(np.float64)
    assert after.size == before.size
    level = 20 * np.log10(np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2)))
    assert abs(level) < 1.5, "the reverberation keeps the voice's level"
    assert not np.allclose(after, before, atol=50), "and changes the sound"
    # Against a direct convolution on a short piece: the overlap-add is exact.
    ir = np.array([1.0, 0.0, 0.5, 0.25])
    x = rng.standard_normal(200_000)
    assert np.allclose(wake_sets._convolve(x, ir, block=1 << 12)[: x.size],
                       np.convolve(x, ir)[: x.size])  # fmt: skip
