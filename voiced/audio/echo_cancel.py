"""Echo cancellation in the microphone path (WebRTC AEC3 through pywebrtc-audio).

The far-end reference is what the sink actually played: the time-aligned sink
hands every block it plays, with its stream position, to :class:`FarEnd`, so the
reference for microphone frame k is exactly what the speaker played over frame
k (AEC3 then finds the room's delay itself). A sound card hands what it played
with when it played it (PortAudio's timing) to :class:`DeviceFarEnd`, which
keeps it by that clock, the one the microphone's frames are stamped in.
:class:`MicCleaner` runs in the listener thread, one 10 ms frame at a time
(AEC3's own frame), and also estimates the microphone-to-speaker delay by
cross-correlation, for ``voiced doctor`` and the status.

AEC3 leaves a residual in reverberant rooms that webrtcvad readily calls speech;
:class:`ResidualGate` says whether a cleaned frame is louder than the residual
this room leaves, so the echo's remains are not taken for the user.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from voiced.audio.format import FRAME_SAMPLES, PIPELINE_RATE_HZ, ms_to_samples
from voiced.audio.resample import StreamResampler
from voiced.errors import AudioError

__all__ = [
    "CleanFrame",
    "DeviceFarEnd",
    "FarEnd",
    "FarEndReader",
    "MicCleaner",
    "ResidualGate",
    "echo_cancel_problem",
    "make_processor",
]

FAR_END_KEEP_S = 4.0
"""Played audio kept for the reference and the delay estimate."""
DELAY_WINDOW_S = 2.0
MAX_DELAY_MS = 500
DELAY_EVERY_FRAMES = 100
"""Estimate the delay once a second of playback."""
LEARN_FRAMES = 400
"""AEC3 takes about 4 s of playback to converge (34 dB of echo gone)."""
REFERENCE_LEAD_MS = 30
"""With a sound card, the far end is read from this much before the microphone
frame's capture time. The two times are good to a millisecond or two and the resamplers
add a few; a reference that comes after its echo cannot be cancelled at all,
while one early by tens of milliseconds is only more delay for AEC3 to find."""
REALIGN_WITHIN_MS = (5.0, 200.0)
"""A sound card's far end is moved when the echo is found outside this (AEC3 cannot
cancel an echo that comes before its reference, and finds long delays slowly)..."""
REALIGN_TO_MS = 40.0
"""...so that the echo comes this long after it."""
REALIGN_AGREE_MS = 3.0
"""Two estimates in a row this close, both out of reach, move the far end."""
EARLY_ECHO_MS = 300
"""How far before its reference an echo is looked for (a sound card's far end)."""
CONTIGUOUS_S = 0.005
"""A played block that starts this close to where the last ended follows on from it."""
PENDING_BLOCKS = 400
"""Played blocks waiting for the listener thread (8 s of 20 ms blocks); older ones
are dropped if it falls that far behind."""
_SILENT_DB = 30.0
"""Frames below this (dB re 1 LSB RMS, about -60 dBFS) carry no echo worth a thought."""


def echo_cancel_problem() -> str | None:
    """Why echo cancellation cannot run here (None: it can)."""
    try:
        import pywebrtc_audio  # noqa: F401
    except ImportError as err:  # pragma: no cover - the wheel is a dependency
        return f"pywebrtc-audio does not import ({err}); pip install 'pywebrtc-audio>=0.2,<0.3'"
    return None


def make_processor(*, echo_cancel: bool, noise_suppression: bool) -> Any:
    """The WebRTC processor for one stream (not thread-safe: one thread uses it)."""
    problem = echo_cancel_problem()
    if problem is not None:
        raise AudioError(f"echo cancellation is not available: {problem}",
                         fix="set [audio] echo_cancel = \"off\"")  # fmt: skip
    from pywebrtc_audio import AudioProcessor

    return AudioProcessor(
        sample_rate=PIPELINE_RATE_HZ, num_channels=1, echo_cancellation=echo_cancel,
        noise_suppression=noise_suppression, high_pass_filter=echo_cancel,
    )  # fmt: skip


class FarEndReader(Protocol):
    """Where the canceller reads what the speaker played over a microphone frame."""

    def read(self, start_sample: int, num_samples: int) -> np.ndarray: ...

    @property
    def lead_ms(self) -> float:
        """How much before the microphone frame's time it is read (the delay found is
        against a reference read that far back)."""
        ...

    def move_by_ms(self, more_lead_ms: float) -> bool:
        """Read it from further back (negative: less far); False where it cannot move."""
        ...


class FarEnd:
    """What the speaker played, by stream position (16 kHz int16), for the canceller.

    Written by the sink's tap on the event loop, read by the listener thread.
    """

    def __init__(self, keep_s: float = FAR_END_KEEP_S) -> None:
        self._size = int(keep_s * PIPELINE_RATE_HZ)
        self._ring = np.zeros(self._size, dtype=np.int16)
        self._end = 0
        """Stream position one past the last sample written."""
        self._lock = threading.Lock()

    @property
    def size_samples(self) -> int:
        return self._size

    @property
    def end_sample(self) -> int:
        """One past the last position written."""
        return self._end

    def played(self, position_sample: int, samples: np.ndarray) -> None:
        with self._lock:
            if position_sample > self._end:  # a gap: nothing played there
                self._write(self._end, np.zeros(min(position_sample - self._end, self._size),
                                                dtype=np.int16))  # fmt: skip
            self._write(position_sample, samples[-self._size :])

    def _write(self, position: int, samples: np.ndarray) -> None:
        at = position % self._size
        first = min(samples.size, self._size - at)
        self._ring[at : at + first] = samples[:first]
        self._ring[: samples.size - first] = samples[first:]
        self._end = max(self._end, position + samples.size)

    @property
    def lead_ms(self) -> float:
        return 0.0

    def move_by_ms(self, more_lead_ms: float) -> bool:
        """Stream positions are exact: nothing to move."""
        return False

    def read(self, start_sample: int, num_samples: int) -> np.ndarray:
        """What played over those samples; silence where nothing did (or too long ago)."""
        out = np.zeros(num_samples, dtype=np.int16)
        with self._lock:
            lo = max(start_sample, self._end - self._size)
            hi = min(start_sample + num_samples, self._end)
            if hi > lo:
                out[lo - start_sample : hi - start_sample] = self._ring[
                    np.arange(lo, hi) % self._size
                ]
        return out


class DeviceFarEnd:
    """What a sound card played, kept by the audio clock, for microphone frames
    stamped in the same clock (``AudioFrame.captured_at_s``).

    ``played`` runs on PortAudio's output thread and only queues the block;
    ``read`` (the listener thread) first brings the queued blocks in, resampled to
    16 kHz, at index round(time x 16 kHz) of a :class:`FarEnd`.
    """

    LEAD_RANGE_MS = (-200.0, 1000.0)
    """From 200 ms after the frame's time (the sink's callback runs ahead of its
    converter by its latency, so what is about to play is there already) to 1 s
    before it."""

    def __init__(self, keep_s: float = FAR_END_KEEP_S,
                 lead_ms: int = REFERENCE_LEAD_MS) -> None:  # fmt: skip
        self._lead_samples = ms_to_samples(lead_ms)
        self._far = FarEnd(keep_s)
        self._blocks: deque[tuple[float, np.ndarray, int]] = deque(maxlen=PENDING_BLOCKS)
        self._resampler: StreamResampler | None = None
        self._rate_hz = 0
        self._block_end_s: float | None = None
        """Where the last block brought in ended, in the audio clock."""
        self._run_index = 0
        """Where the current run of contiguous blocks begins in the far end (16 kHz
        samples of the clock)."""
        self._run_out = 0
        """16 kHz samples of the run so far."""
        self._ahead_samples = 0
        """How far past the last read the far end already held (the sink's lead)."""

    def played(self, dac_time_s: float, samples: np.ndarray, rate_hz: int) -> None:
        """The sink's tap (PortAudio's thread): copy and return."""
        self._blocks.append((dac_time_s, samples.copy(), rate_hz))

    @property
    def lead_ms(self) -> float:
        return self._lead_samples * 1000.0 / PIPELINE_RATE_HZ

    def move_by_ms(self, more_lead_ms: float) -> bool:
        """The clock's reports put the echo out of the canceller's reach: read the
        far end from that much further back (negative: less), within LEAD_RANGE_MS.
        Through PulseAudio's monitor the echo came 40 to 70 ms before the time the
        output reported for it; on a board it comes after, by the room's delay."""
        low, high = self.LEAD_RANGE_MS
        # Not from later than what has been handed over yet (less a frame's margin):
        # silence there would leave the canceller nothing to cancel with.
        low = max(low, self.lead_ms - (self._ahead_samples - FRAME_SAMPLES) * 1000.0
                  / PIPELINE_RATE_HZ)  # fmt: skip
        lead_ms = min(max(self.lead_ms + more_lead_ms, low), high)
        lead = round(lead_ms * PIPELINE_RATE_HZ / 1000)
        moved = lead != self._lead_samples
        self._lead_samples = lead
        return moved

    def reference_start(self, captured_at_s: float) -> int:
        """Where to read the far end for a microphone frame captured then."""
        return round(captured_at_s * PIPELINE_RATE_HZ) - self._lead_samples

    def read(self, start_sample: int, num_samples: int) -> np.ndarray:
        self._bring_in()
        self._ahead_samples = self._far.end_sample - (start_sample + num_samples)
        return self._far.read(start_sample, num_samples)

    def _bring_in(self) -> None:
        while self._blocks:
            dac_time_s, samples, rate_hz = self._blocks.popleft()
            end_s = self._block_end_s
            if (self._resampler is None or rate_hz != self._rate_hz or end_s is None
                    or abs(dac_time_s - end_s) > CONTIGUOUS_S):  # fmt: skip
                # A new run (a reply's start, an underrun): placed by its own time,
                # after what the last run's resampler still held (its last 30 ms).
                self._add(self._resampler.flush() if self._resampler is not None else b"")
                self._resampler = StreamResampler(rate_hz, 1)
                self._rate_hz = rate_hz
                self._run_out = 0
                self._run_index = round(dac_time_s * PIPELINE_RATE_HZ)
                if self._run_index < self._far.end_sample - self._far.size_samples:
                    self._far = FarEnd(self._far.size_samples / PIPELINE_RATE_HZ)  # clock set back
            self._block_end_s = dac_time_s + samples.size / rate_hz
            self._add(self._resampler.process(samples))

    def _add(self, pcm_bytes: bytes) -> None:
        pcm = np.frombuffer(pcm_bytes, dtype="<i2")
        if pcm.size:
            self._far.played(self._run_index + self._run_out, pcm)
            self._run_out += int(pcm.size)


@dataclass(frozen=True, slots=True)
class CleanFrame:
    """One microphone frame after the canceller."""

    pcm: bytes
    level_db: float
    """RMS of the cleaned frame, dB re 1 LSB (90 is full scale)."""
    echo_possible: bool
    """The speaker played within the room's memory (so a residual may be in the frame)."""
    above_residual: bool
    """Louder than the residual this room leaves: may be the user, not the echo."""
    converged: bool = True
    """The canceller has found the room's echo path and learnt it (see
    MicCleaner.converged); until then the cleaned audio is not to be trusted."""


def _level_db(samples: np.ndarray) -> float:
    power = float(np.mean(samples.astype(np.float64) ** 2)) if samples.size else 0.0
    return 10.0 * float(np.log10(power + 1.0))


class ResidualGate:
    """Learns how loud the canceller's residual is against the far end, in this room.

    The residual's level relative to the far end's recent level is tracked as a
    running 95th percentile over frames with echo about; a frame counts as "above
    the residual" when it is ``margin_db`` louder than that. It starts strict (the
    canceller has not converged) and learns within seconds of playback.
    """

    QUANTILE = 0.95
    STEP_DB = 0.7
    WINDOW_FRAMES = 30
    """The far end's level is its mean power over the last 300 ms."""
    MEMORY_FRAMES = 100
    """A residual may follow the far end by this long (delay and reverberation)."""
    DECAY_DB_PER_FRAME = 0.6
    """60 dB a second: a reverberation time of 1 s, longer than most rooms'."""
    USER_ABOVE_DB = 10.0
    USER_WEIGHT = 0.1
    """Frames this far above the residual are likely the user: they teach a tenth as
    much (not nothing, or the estimate could only ever fall)."""

    def __init__(self, margin_db: float = 3.0, initial_db: float = 0.0) -> None:
        self.margin_db = margin_db
        self.residual_db = initial_db
        """Residual level against the far end (dB), the tracked percentile."""
        self._far_power: list[float] = []
        self._since_far = self.MEMORY_FRAMES
        self._reference_db = 0.0

    @property
    def asleep(self) -> bool:
        """The far end has been silent for longer than the room's memory."""
        return self._since_far >= self.MEMORY_FRAMES

    def update(self, far: np.ndarray, cleaned_db: float) -> tuple[bool, bool]:
        """(echo_possible, above_residual) for this frame; learns from it."""
        power = float(np.mean(far.astype(np.float64) ** 2)) if far.size else 0.0
        self._far_power.append(power)
        if len(self._far_power) > self.WINDOW_FRAMES:
            del self._far_power[0]
        far_db = 10.0 * float(np.log10(sum(self._far_power) / len(self._far_power) + 1.0))
        playing = far_db > _SILENT_DB
        self._since_far = 0 if playing else self._since_far + 1
        if self._since_far >= self.MEMORY_FRAMES:
            return False, True
        # The room still rings after the far end drops (pauses, the reply's end): the
        # reference falls no faster than a reverberant room's tail does.
        self._reference_db = max(far_db, self._reference_db - self.DECAY_DB_PER_FRAME)
        relative = cleaned_db - self._reference_db
        above = relative > self.residual_db + self.margin_db and cleaned_db > _SILENT_DB
        if playing:
            # Frames far above the residual are mostly the user, not the room: learning
            # from them at full weight (a barge-in, double talk) would make the next
            # reply deaf to the user.
            step = self.STEP_DB
            if relative >= self.residual_db + self.USER_ABOVE_DB:
                step *= self.USER_WEIGHT
            self.residual_db += step * (self.QUANTILE - float(relative < self.residual_db))
        return True, above


class MicCleaner:
    """Runs the canceller (and noise suppressor) on each microphone frame, in the
    listener thread; estimates the microphone-to-speaker delay as it goes."""

    def __init__(self, processor: Any, far_end: FarEndReader, *, echo_cancel: bool,
                 noise_suppression: bool = False,
                 remake: Callable[[], Any] | None = None) -> None:  # fmt: skip
        """``remake`` makes a fresh processor: given one, a far end that can move (a
        sound card's) is moved when the echo is found out of AEC3's reach, and the
        canceller starts again from there."""
        self._processor = processor
        self._remake = remake
        self.realignments = 0
        """Times the far end was moved to put the echo within reach."""
        self._out_of_reach_ms: float | None = None
        """The last delay estimate, when it was out of AEC3's reach."""
        self.far_end = far_end
        self.echo_cancel = echo_cancel
        self.noise_suppression = noise_suppression
        self.gate = ResidualGate()
        self._mic_history: list[np.ndarray] = []
        self._far_history: list[np.ndarray] = []
        self._frames = 0
        self.delay_ms: float | None = None
        """The latest estimate of the speaker-to-microphone delay (None: not yet)."""
        self.delay_confidence = 0.0
        self.process_s = 0.0
        """CPU seconds spent in the canceller (for the benchmark)."""
        self._far_frames = 0
        self.converged = False
        """An echo path has been found (the delay estimate) and the canceller has
        heard LEARN_FRAMES of playback since. Before that AEC3 also suppresses the
        user while the far end plays (it even does with no echo at all, not having
        found one), so the pipeline hears the raw microphone, as without it."""

    def clean(self, pcm: bytes, start_sample: int) -> CleanFrame:
        """One frame (any length; processed in 10 ms pieces). Blocking: off the loop."""
        near = np.frombuffer(pcm, dtype="<i2")
        far = self.far_end.read(start_sample, near.size)
        if self.echo_cancel and not self.noise_suppression and self.gate.asleep and not far.any():
            # Nothing has played for a while (the state a device spends its life in):
            # nothing to cancel, and AEC3 sees neither side, so they stay aligned.
            self.gate.update(far, 0.0)
            return CleanFrame(pcm, _level_db(near), False, True, self.converged)
        began = time.thread_time()
        pieces = []
        for at in range(0, near.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            piece = near[at : at + FRAME_SAMPLES]
            if self.echo_cancel:
                pieces.append(self._processor.process(piece, far[at : at + FRAME_SAMPLES]))
            else:
                pieces.append(self._processor.process(piece))
        rest = near.size % FRAME_SAMPLES
        if rest:
            pieces.append(near[near.size - rest :])
        self.process_s += time.thread_time() - began
        cleaned = np.concatenate(pieces) if pieces else near
        level = _level_db(cleaned)
        if not self.echo_cancel:
            return CleanFrame(cleaned.astype("<i2").tobytes(), level, False, True)
        possible, above = self.gate.update(far, level)
        self._track_delay(near, far)
        if not self.converged:
            if self.delay_ms is not None and far.any():
                self._far_frames += 1
            self.converged = self._far_frames >= LEARN_FRAMES
        return CleanFrame(cleaned.astype("<i2").tobytes(), level, possible, above,
                          self.converged)  # fmt: skip

    def _track_delay(self, near: np.ndarray, far: np.ndarray) -> None:
        self._mic_history.append(near.copy())
        self._far_history.append(far)
        keep = int(DELAY_WINDOW_S * PIPELINE_RATE_HZ) // FRAME_SAMPLES
        if len(self._mic_history) > keep:
            del self._mic_history[0], self._far_history[0]
        self._frames += 1
        if self._frames % DELAY_EVERY_FRAMES == 0 and len(self._mic_history) == keep:
            early_ms = EARLY_ECHO_MS if self._remake is not None else 0
            found = estimate_delay_ms(np.concatenate(self._mic_history),
                                      np.concatenate(self._far_history),
                                      min_delay_ms=-early_ms)  # fmt: skip
            if found is not None:
                self.delay_ms, self.delay_confidence = found
                self._realign_if_out_of_reach(found[0])
            else:
                self._out_of_reach_ms = None

    def _realign_if_out_of_reach(self, delay_ms: float) -> None:
        low, high = REALIGN_WITHIN_MS
        last, self._out_of_reach_ms = self._out_of_reach_ms, None
        if self._remake is None or low <= delay_ms <= high:
            return
        if last is None or abs(delay_ms - last) > REALIGN_AGREE_MS:
            # One estimate may be double talk or a spurious peak: wait for a second
            # one, a second later, that agrees, before throwing 4 s of learning away.
            self._out_of_reach_ms = delay_ms
            return
        # The echo follows the reference read by (delay + lead) in all: read it so
        # that it follows by REALIGN_TO_MS.
        if not self.far_end.move_by_ms(delay_ms - REALIGN_TO_MS):
            return
        self._processor = self._remake()
        self.gate = ResidualGate()
        self._mic_history.clear()
        self._far_history.clear()
        self.delay_ms = None
        self._far_frames = 0
        self.converged = False
        self.realignments += 1


def estimate_delay_ms(
    mic: np.ndarray, far: np.ndarray, max_delay_ms: int = MAX_DELAY_MS, min_delay_ms: int = 0
) -> tuple[float, float] | None:
    """(delay_ms, confidence) of ``far`` in ``mic`` by GCC-PHAT, or None when the far
    end was too quiet or no peak stands out. Confidence: the peak over the
    correlation's spread (above ~5 is a clear echo path). A negative
    ``min_delay_ms`` also looks for an echo that comes before its reference."""
    if _level_db(far) < _SILENT_DB + 10.0:
        return None
    size = 1 << int(np.ceil(np.log2(mic.size + far.size)))
    spectrum = np.fft.rfft(mic.astype(np.float64), size) * np.conj(
        np.fft.rfft(far.astype(np.float64), size)
    )
    spectrum /= np.abs(spectrum) + 1e-9
    circular = np.fft.irfft(spectrum, size)
    early = ms_to_samples(-min_delay_ms) if min_delay_ms < 0 else 0
    correlation = np.concatenate([circular[size - early :] if early else circular[:0],
                                  circular[: ms_to_samples(max_delay_ms)]])  # fmt: skip
    peak = int(np.argmax(np.abs(correlation)))
    spread = float(np.std(correlation)) + 1e-12
    confidence = float(abs(correlation[peak])) / spread
    if confidence < 5.0:
        return None
    return (peak - early) * 1000.0 / PIPELINE_RATE_HZ, confidence
