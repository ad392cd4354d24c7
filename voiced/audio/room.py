"""A simulated room: what the speaker plays comes back into the microphone.

The time-aligned sink (voiced.audio.sinks.AlignedSink) hands every block it plays
to :meth:`RoomSimulator.played`; :meth:`RoomSimulator.mix` adds that audio, passed
through the room's impulse response, to each microphone frame at the same stream
position, plus the room's noise. Echo is then part of every realtime test and
benchmark, as it is of every real room.

Rooms are synthetic presets, made deterministically (the same samples on every
machine), or a real impulse-response WAV. The echo level is the impulse
response's energy gain: with the user's speech and the reply at the same level
at their sources (both Piper voices in the tests), ``echo_gain_db`` is how much
louder the echo is than the user at the microphone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, AudioFrame, ms_to_samples
from voiced.audio.wavfile import read_wav_as_pipeline_pcm
from voiced.errors import AudioError

__all__ = ["ROOMS", "Room", "RoomSimulator", "RoomSpec", "attach_room", "load_room"]

MIN_DELAY_MS = 10
"""The sound card's output buffer: nothing played comes back sooner than one frame
(which is also what lets the echo of frame k be mixed into frame k + 1)."""
MAX_IR_S = 2.0
NOISE_LOOP_S = 10.0
_SEED = 16


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """A synthetic room."""

    name: str
    delay_ms: int
    """Speaker to microphone, sound card buffers included (the direct path's arrival)."""
    rt60_ms: int
    """Reverberation time: the tail falls by 60 dB in this long."""
    echo_gain_db: float
    """Energy gain of the whole echo path (direct path and tail): the echo's level
    against the user's when both are spoken at the same level."""
    noise_dbfs: float | None = None
    """RMS level of the room's steady noise (fan, fridge); None for none."""
    description: str = ""


ROOMS: dict[str, RoomSpec] = {
    spec.name: spec
    for spec in (
        RoomSpec("desk", 10, 150, 6.0, None, "a puck speaker beside its microphone"),
        RoomSpec("kitchen", 40, 400, 0.0, -55.0, "hard surfaces and a fridge"),
        RoomSpec("living", 80, 600, 3.0, -50.0, "a soundbar across a furnished room"),
        RoomSpec("hall", 150, 900, -3.0, None, "a far speaker in a long, bare room"),
    )
}
"""The presets: delays 10 to 150 ms, three reverberation times, echo up to 6 dB
louder than the user, with and without noise."""


@dataclass(frozen=True, slots=True)
class Room:
    """An impulse response (16 kHz, float) and the room's noise level."""

    name: str
    impulse_response: np.ndarray
    noise_dbfs: float | None = None

    @property
    def delay_ms(self) -> float:
        """Arrival of the direct path (the first tap within 20 dB of the largest)."""
        magnitude = np.abs(self.impulse_response)
        first = int(np.argmax(magnitude >= magnitude.max() * 0.1))
        return first * 1000.0 / PIPELINE_RATE_HZ

    @property
    def echo_gain_db(self) -> float:
        energy = float(np.sum(self.impulse_response.astype(np.float64) ** 2))
        return 10.0 * float(np.log10(max(energy, 1e-12)))


def synthetic_ir(spec: RoomSpec) -> np.ndarray:
    """A direct path, a few early reflections and an exponentially decaying noise
    tail, scaled to the spec's energy gain. Seeded by the name: deterministic."""
    rng = np.random.default_rng([_SEED, *spec.name.encode()])
    delay = ms_to_samples(spec.delay_ms)
    tail = ms_to_samples(spec.rt60_ms)
    ir = np.zeros(delay + tail, dtype=np.float64)
    ir[delay] = 1.0
    for _ in range(4):  # walls and the table: within the first 20 ms
        at = delay + int(rng.integers(ms_to_samples(2), ms_to_samples(20)))
        ir[at] += float(rng.uniform(0.2, 0.5)) * float(rng.choice((-1.0, 1.0)))
    t = np.arange(tail) / PIPELINE_RATE_HZ
    decay = np.exp(-6.9078 * t / (spec.rt60_ms / 1000.0))  # 60 dB over rt60
    reverb = rng.standard_normal(tail) * decay
    # Rooms absorb highs first: a gentle low-pass on the tail.
    reverb = np.convolve(reverb, np.ones(4) / 4.0, mode="same")
    reverb *= 0.6 / max(np.sqrt(np.sum(reverb**2)), 1e-12)  # direct-to-reverb about +4 dB
    ir[delay:] += reverb
    return _scaled(ir, spec.echo_gain_db).astype(np.float32)


def _scaled(ir: np.ndarray, gain_db: float) -> np.ndarray:
    energy = float(np.sum(ir**2))
    scaled: np.ndarray = ir * np.sqrt(10.0 ** (gain_db / 10.0) / max(energy, 1e-12))
    return scaled


def load_room(spec: str) -> Room:
    """A preset by name, or an impulse-response WAV (any rate and channel count; the
    first channel's arrival is kept, pushed to at least 10 ms for the sound card)."""
    text = spec.strip()
    preset = ROOMS.get(text.lower())
    if preset is not None:
        return Room(preset.name, synthetic_ir(preset), preset.noise_dbfs)
    if not text.lower().endswith(".wav"):
        raise AudioError(
            f"unknown room {text!r:.60}",
            fix=f"use one of {', '.join(ROOMS)} or the path of an impulse-response .wav",
        )
    path = Path(text)
    pcm = read_wav_as_pipeline_pcm(path, max_duration_s=MAX_IR_S)
    ir = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if ir.size == 0 or not np.any(ir):
        raise AudioError(f"{path}: the impulse response is silent", fix="record it again")
    onset = int(np.argmax(np.abs(ir) >= np.abs(ir).max() * 0.1))
    short = ms_to_samples(MIN_DELAY_MS) - onset
    if short > 0:
        ir = np.concatenate([np.zeros(short, dtype=np.float32), ir])
    return Room(path.stem, ir)


class RoomSimulator:
    """Streams the echo: ``played`` takes each block the sink plays, in stream order;
    ``mix`` adds the echo (and noise) that reaches the microphone during a frame.

    Taps under 10 ms are zero (see MIN_DELAY_MS), so the echo of a block played
    during frame k is complete by the time frame k + 1 is mixed.
    """

    def __init__(self, room: Room) -> None:
        ir = room.impulse_response.astype(np.float64)
        lead = ms_to_samples(MIN_DELAY_MS)
        if np.any(ir[:lead]):
            ir = np.concatenate([np.zeros(lead), ir])
        self.room = room
        self._ir = ir
        self._echo = np.zeros(ir.size + 4 * FRAME_SAMPLES)
        self._base = 0
        """Stream position of ``_echo[0]``."""
        self._noise = _noise_loop(room.noise_dbfs)
        self.echo_energy = 0.0
        """Sum of squared echo samples mixed so far (int16 units): for the benchmark."""

    def played(self, position_sample: int, samples: np.ndarray) -> None:
        """The sink played ``samples`` (int16) starting at ``position_sample``."""
        if not samples.any():
            return
        echo = np.convolve(samples.astype(np.float64), self._ir)
        start = position_sample - self._base
        if start < 0:  # played before the last mixed frame: only its future part counts
            echo, start = echo[-start:], 0
        end = start + echo.size
        if end > self._echo.size:
            self._echo = np.concatenate([self._echo, np.zeros(end - self._echo.size)])
        self._echo[start:end] += echo

    def echo_at(self, start_sample: int, num_samples: int) -> np.ndarray:
        """The echo reaching the microphone over those samples (float, int16 units),
        consumed: each stream position is taken once, in order."""
        skip = start_sample - self._base
        if skip > 0:
            self._advance(skip)
        out = self._echo[:num_samples].copy()
        if out.size < num_samples:
            out = np.concatenate([out, np.zeros(num_samples - out.size)])
        self._advance(num_samples)
        return out

    def _advance(self, num_samples: int) -> None:
        keep = self._echo[num_samples:]
        self._echo = np.concatenate([keep, np.zeros(min(num_samples, self._echo.size))])
        self._base += num_samples

    def mix(self, frame: AudioFrame) -> AudioFrame:
        """The frame as the microphone hears it in this room."""
        near = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float64)
        echo = self.echo_at(frame.start_sample, near.size)
        self.echo_energy += float(np.sum(echo**2))
        mixed = near + echo
        if self._noise is not None:
            at = frame.start_sample % self._noise.size
            noise = np.take(self._noise, np.arange(at, at + near.size), mode="wrap")
            mixed += noise
        pcm = np.clip(np.rint(mixed), -32768, 32767).astype("<i2").tobytes()
        return AudioFrame(pcm, frame.start_sample)


def _noise_loop(level_dbfs: float | None) -> np.ndarray | None:
    """Ten seconds of pinkish noise (1/f power) at ``level_dbfs`` RMS, looped."""
    if level_dbfs is None:
        return None
    rng = np.random.default_rng(_SEED)
    size = int(NOISE_LOOP_S * PIPELINE_RATE_HZ)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / PIPELINE_RATE_HZ)
    spectrum *= 1.0 / np.sqrt(np.maximum(freqs, 20.0))
    noise = np.fft.irfft(spectrum, n=size)
    noise *= 32768.0 * 10.0 ** (level_dbfs / 20.0) / max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    return noise


def attach_room(sink: object, spec: str) -> RoomSimulator:
    """A simulator for the room ``spec`` names, listening to ``sink``'s playback. The
    room needs the time-aligned sink (realtime runs): only it knows what played when."""
    taps = getattr(sink, "taps", None)
    if not isinstance(taps, list):
        raise AudioError(
            "a simulated room needs realtime file input and output",
            fix="add --realtime, with a .wav, '-' or 'null' output",
        )
    simulator = RoomSimulator(load_room(spec))
    taps.append(simulator.played)
    return simulator
