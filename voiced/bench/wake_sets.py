"""The spoken sets of the wake-word benchmark, synthesised once into a cache folder.

Voices: espeak-ng variants (other accents, pitches and speeds than any wake model
was trained on) and the Piper voice at three speeds. A third of every set is mixed
with pink noise at 20 dB SNR. Each set is one continuous 16 kHz stream, as a
microphone gives it, with where every wake word starts and ends.

- one positive set per wake word: the wake word, a short pause, a question;
- speech: ordinary sentences and questions with no wake word in them;
- music: synthetic tunes (chords of harmonic tones over a beat), no speech.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voiced.audio.format import PIPELINE_RATE_HZ
from voiced.audio.resample import resample_pcm
from voiced.audio.room import Room
from voiced.bench.corpus import DEFAULT_PROMPTS
from voiced.engines.tts import PiperTts
from voiced.errors import UsageError
from voiced.settings import TtsSettings

SET_VERSION = 1
"""Bumped whenever what is synthesised changes, so an old cache is rebuilt."""
WAKE_PHRASES = {
    "hey_jarvis": "Hey Jarvis.",
    "okay_nabu": "Okay Nabu.",
    "hey_mycroft": "Hey Mycroft.",
    "alexa": "Alexa.",
    "hey_rhasspy": "Hey Rhasspy.",
}
ESPEAK_VOICES = (
    ("espeak en-us", "en-us", 165),
    ("espeak en-gb", "en-gb", 150),
    ("espeak en-us+f3", "en-us+f3", 175),
    ("espeak en-gb-scotland", "en-gb-scotland", 160),
    ("espeak en-029+m3", "en-029+m3", 140),
    ("espeak en-gb-x-rp+f2", "en-gb-x-rp+f2", 185),
)
"""(name, espeak-ng voice, words per minute)."""
PIPER_SPEEDS = (("piper x0.8", 0.8), ("piper x1.0", 1.0), ("piper x1.25", 1.25))
"""(name, Piper length scale: above 1 is slower)."""
QUESTIONS = (
    "what time is it?", "set a timer for ten minutes.", "what is the weather like?",
    "turn it up.", "what is the capital of France?", "cancel the timer.",
)  # fmt: skip
NOISY_EVERY = 3
"""Every third turn is mixed with noise."""
SNR_DB = 20.0
MUSIC_S = 300
GAP_S = 0.8
"""Silence between turns."""


@dataclass(frozen=True, slots=True)
class Turn:
    voice: str
    noisy: bool
    start_ms: float
    """Where the wake word (or the sentence, in the speech set) starts in the stream."""
    wake_end_ms: float
    """Where the wake word's last sound ends (0 in sets without one)."""
    end_ms: float
    """Where the turn's speech ends."""


@dataclass(frozen=True, slots=True)
class SpokenSet:
    name: str
    """A wake word's name, or speech or music."""
    pcm: bytes
    turns: tuple[Turn, ...]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / PIPELINE_RATE_HZ


Speaker = Callable[[str], bytes]
"""Text to 16 kHz mono int16."""


def speakers(piper_path: Path) -> dict[str, Speaker]:
    """Every benchmark voice by name. espeak-ng must be installed."""
    if shutil.which("espeak-ng") is None:
        raise UsageError(
            "the wake benchmark needs espeak-ng for its other voices",
            fix="apt-get install espeak-ng",
        )
    voices: dict[str, Speaker] = {}
    for name, voice, wpm in ESPEAK_VOICES:
        voices[name] = lambda text, v=voice, s=wpm: _espeak(text, v, s)  # type: ignore[misc]
    for name, scale in PIPER_SPEEDS:
        tts = PiperTts(piper_path, TtsSettings(length_scale=scale))
        voices[name] = lambda text, t=tts: resample_pcm(  # type: ignore[misc]
            t.synthesize_all(text, repeatable=True), t.sample_rate_hz, PIPELINE_RATE_HZ
        )
    return voices


def _espeak(text: str, voice: str, wpm: int) -> bytes:
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", "--", text],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    with wave.open(io.BytesIO(out)) as wav:
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    return resample_pcm(frames, rate, PIPELINE_RATE_HZ)


def trim(pcm: bytes) -> bytes:
    """Without leading and trailing near-silence (below 1 % of the peak)."""
    audio = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 0.01 * max(1, np.abs(audio).max()))
    if loud.size == 0:
        return b""
    return audio[loud[0] : loud[-1] + 1].tobytes()


def pink_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, samples)
    result: np.ndarray = noise / (np.sqrt(np.mean(noise**2)) or 1.0)
    return result


def with_noise(pcm: bytes, rng: np.random.Generator, snr_db: float = SNR_DB) -> bytes:
    """``pcm`` with pink noise at ``snr_db`` below the speech's RMS (over its
    louder half, so pauses do not count as speech)."""
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if audio.size == 0:
        return pcm
    level = np.abs(audio)
    rms = float(np.sqrt(np.mean(audio[level >= np.median(level)] ** 2)))
    noisy = audio + pink_noise(audio.size, rng) * rms / 10 ** (snr_db / 20)
    return np.clip(noisy, -32768, 32767).astype("<i2").tobytes()


class _Stream:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.samples = 0

    def add(self, pcm: bytes) -> float:
        """Append; returns where it starts, in ms."""
        start = self.samples / PIPELINE_RATE_HZ * 1000
        self.parts.append(pcm)
        self.samples += len(pcm) // 2
        return start

    def silence(self, seconds: float) -> None:
        self.add(bytes(int(seconds * PIPELINE_RATE_HZ) * 2))

    @property
    def ms(self) -> float:
        return self.samples / PIPELINE_RATE_HZ * 1000


def positive_set(wake_word: str, voices: dict[str, Speaker], seed: int) -> SpokenSet:
    """Every voice says the wake word then each question; a third in noise."""
    rng = np.random.default_rng(seed)
    stream, turns = _Stream(), []
    for index, (voice, question) in enumerate((v, q) for v in sorted(voices) for q in QUESTIONS):
        noisy = index % NOISY_EVERY == NOISY_EVERY - 1
        wake = trim(voices[voice](WAKE_PHRASES[wake_word]))
        turn = wake + bytes(int(0.25 * PIPELINE_RATE_HZ) * 2) + trim(voices[voice](question))
        turn = (
            bytes(int(0.3 * PIPELINE_RATE_HZ) * 2) + turn + bytes(int(GAP_S * PIPELINE_RATE_HZ) * 2)
        )
        if noisy:
            turn = with_noise(turn, rng)
        start = stream.add(turn) + 300
        wake_end = start + len(wake) / 2 / PIPELINE_RATE_HZ * 1000
        turns.append(Turn(voice, noisy, start, wake_end, stream.ms - GAP_S * 1000))
    return SpokenSet(wake_word, b"".join(stream.parts), tuple(turns))


def speech_texts() -> list[str]:
    """Ordinary sentences: the latency corpus and the answer-quality questions."""
    texts = [text for text, _ in DEFAULT_PROMPTS]
    questions = Path(__file__).with_name("qa_questions.jsonl").read_text(encoding="utf-8")
    texts += [json.loads(line)["question"] for line in questions.splitlines() if line.strip()]
    return texts


def speech_set(voices: dict[str, Speaker], seed: int) -> SpokenSet:
    """Every voice reads every text once, in a shuffled order; a third in noise."""
    rng = np.random.default_rng(seed)
    pairs = [(v, t) for v in sorted(voices) for t in speech_texts()]
    order = rng.permutation(len(pairs))
    stream, turns = _Stream(), []
    for index, pair_index in enumerate(order):
        voice, text = pairs[pair_index]
        noisy = index % NOISY_EVERY == NOISY_EVERY - 1
        pcm = trim(voices[voice](text)) + bytes(int(GAP_S * PIPELINE_RATE_HZ) * 2)
        if noisy:
            pcm = with_noise(pcm, rng)
        start = stream.add(pcm)
        turns.append(Turn(voice, noisy, start, 0.0, stream.ms - GAP_S * 1000))
    return SpokenSet("speech", b"".join(stream.parts), tuple(turns))


def music_set(seed: int, seconds: int | None = None) -> SpokenSet:
    """Tunes without words: random chords of harmonic tones, one every 250-500 ms,
    over a kick drum, with a little noise. Speech-like energy in the voice band
    without phonemes."""
    seconds = MUSIC_S if seconds is None else seconds
    rng = np.random.default_rng(seed)
    rate, out = PIPELINE_RATE_HZ, []
    total = 0
    while total < seconds * rate:
        length = int(rate * rng.choice([0.25, 0.375, 0.5]))
        t = np.arange(length) / rate
        envelope = np.exp(-3 * t) * (1 - np.exp(-200 * t))
        note = np.zeros(length)
        for semitone in rng.choice(np.arange(-12, 13), size=3, replace=False):
            freq = 220.0 * 2 ** (semitone / 12)
            for harmonic in (1, 2, 3, 4):
                note += np.sin(2 * np.pi * freq * harmonic * t) / harmonic**1.5
        kick = np.sin(2 * np.pi * 60 * t) * np.exp(-25 * t) * 2
        out.append((note + kick) * envelope)
        total += length
    audio = np.concatenate(out)[: seconds * rate]
    audio = audio / np.abs(audio).max() * 8000 + pink_noise(audio.size, rng) * 80
    pcm = np.clip(audio, -32768, 32767).astype("<i2").tobytes()
    return SpokenSet("music", pcm, (Turn("music", False, 0.0, 0.0, seconds * 1000.0),))


def load_or_build(
    cache: Path, piper_path: Path, wake_words: tuple[str, ...], say: Callable[[str], None]
) -> list[SpokenSet]:
    """The sets from ``cache``, synthesised there first when missing or stale."""
    index_path = cache / "sets.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("version") == SET_VERSION and set(wake_words) <= set(index["sets"]):
            return [_read(cache, name, index["sets"][name]) for name in index["sets"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged: build it again
    cache.mkdir(parents=True, exist_ok=True)
    voices = speakers(piper_path)
    sets: list[SpokenSet] = []
    for seed, name in enumerate((*wake_words, "speech", "music")):
        say(f"synthesising the {name} set")
        if name == "speech":
            sets.append(speech_set(voices, seed))
        elif name == "music":
            sets.append(music_set(seed))
        else:
            sets.append(positive_set(name, voices, seed))
    for spoken in sets:
        (cache / f"{spoken.name}.pcm").write_bytes(spoken.pcm)
    index = {"version": SET_VERSION, "sets": {s.name: [asdict(t) for t in s.turns] for s in sets}}
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index), encoding="utf-8")
    tmp.replace(index_path)
    return sets


def _read(cache: Path, name: str, turns: list[dict[str, object]]) -> SpokenSet:
    pcm = (cache / f"{name}.pcm").read_bytes()
    return SpokenSet(name, pcm, tuple(Turn(**t) for t in turns))  # type: ignore[arg-type]


def in_room(spoken: SpokenSet, room: Room, seed: int = 0) -> SpokenSet:
    """The set as a microphone across ``room`` hears it: the voices through the
    room's impulse response from its direct path on (its reflections and reverberation
    at the level the voice had), plus the room's noise. The turns keep their times."""
    ir = room.impulse_response.astype(np.float64)
    onset = int(np.argmax(np.abs(ir) >= np.abs(ir).max() * 0.1))
    ir = ir[onset:] / max(float(np.sqrt(np.sum(ir[onset:] ** 2))), 1e-12)
    audio = np.frombuffer(spoken.pcm, dtype="<i2").astype(np.float64)
    heard = _convolve(audio, ir)[: audio.size]
    if room.noise_dbfs is not None:
        rng = np.random.default_rng(seed)
        heard += pink_noise(audio.size, rng) * 32768.0 * 10 ** (room.noise_dbfs / 20)
    pcm = np.clip(heard, -32768, 32767).astype("<i2").tobytes()
    return SpokenSet(f"{spoken.name}@{room.name}", pcm, spoken.turns)


def _convolve(signal: np.ndarray, ir: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """Overlap-add FFT convolution: minutes of audio with a second of impulse response
    in seconds, not the hours a direct convolution would take."""
    size = 1 << int(np.ceil(np.log2(block + ir.size - 1)))
    kernel = np.fft.rfft(ir, size)
    out = np.zeros(signal.size + ir.size - 1)
    for start in range(0, signal.size, block):
        piece = np.fft.irfft(np.fft.rfft(signal[start : start + block], size) * kernel, size)
        end = min(out.size, start + size)
        out[start:end] += piece[: end - start]
    return out
