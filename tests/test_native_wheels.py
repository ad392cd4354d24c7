"""Every native wheel voiced depends on loads and computes on this machine's CPU.

On x86-64 this is cheap; its job is on the boards: scripts/arm64-check.sh runs it in
an emulated Raspberry Pi 4 / 5 (aarch64) root, where a wheel built for a newer CPU
crashes on import (onnxruntime 1.28 and newer did) or computes garbage. Each test
does a small real computation with a known answer, with no model files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

RATE_HZ = 16_000


def _tone(frequency_hz: float, rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return np.sin(2 * math.pi * frequency_hz * t).astype(np.float32)


def _peak_hz(signal: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.argmax(spectrum) * rate_hz / len(signal))


def test_numpy_matmul_and_fft() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert (a @ a.T).tolist() == [[14, 38, 62], [38, 126, 214], [62, 214, 366]]
    assert _peak_hz(_tone(440, RATE_HZ, 1.0), RATE_HZ) == pytest.approx(440, abs=1)


def test_soxr_resamples_48k_to_16k_keeping_the_pitch() -> None:
    import soxr

    out = soxr.resample(_tone(1000, 48_000, 1.0), 48_000, RATE_HZ)
    assert abs(len(out) - RATE_HZ) <= 2
    assert _peak_hz(out, RATE_HZ) == pytest.approx(1000, abs=2)


def test_webrtcvad_hears_no_speech_in_silence_and_refuses_a_bad_frame() -> None:
    import webrtcvad

    vad = webrtcvad.Vad(2)
    frame_10ms = bytes(RATE_HZ // 100 * 2)
    assert vad.is_speech(frame_10ms, RATE_HZ) is False
    with pytest.raises(webrtcvad.Error if hasattr(webrtcvad, "Error") else Exception):
        vad.is_speech(b"\x00" * 7, RATE_HZ)


def test_tokenizers_byte_level_bpe_round_trips() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    text = "Grüße, 東京! 42"
    ids = tokenizer.encode(text).ids
    assert len(ids) == len(text.encode())
    assert tokenizer.decode(ids) == text


def test_ctranslate2_offers_int8_and_float32_on_the_cpu() -> None:
    import ctranslate2

    kinds = ctranslate2.get_supported_compute_types("cpu")
    assert {"int8", "float32"} <= set(kinds)


def test_onnxruntime_loads_with_its_cpu_provider() -> None:
    import onnxruntime

    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.parametrize("module", ["pymicro_wakeword", "pyopen_wakeword", "av", "piper"])
def test_the_other_native_packages_import(module: str) -> None:
    __import__(module)
