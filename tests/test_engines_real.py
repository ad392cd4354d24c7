"""Each real engine on its own, fed speech synthesised at test time by the real voice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest

from voiced.audio.format import PIPELINE_RATE_HZ
from voiced.engines.asr import TranscriptionAbandoned, WhisperAsr
from voiced.engines.loader import Engines
from voiced.engines.slm import MAX_PAUSE_S, SlmEngine
from voiced.engines.tts import PiperTts
from voiced.engines.wake import WakeWordDetector
from voiced.intents.normalize import normalize
from voiced.settings import DEFAULT_SYSTEM_PROMPT, AsrSettings, Settings
from voiced.speech_synth import compose

pytestmark = pytest.mark.models

FRAME_BYTES = PIPELINE_RATE_HZ // 100 * 2
"""10 ms of pipeline audio."""
OTHER_SPEECH = (
    "What is the capital of France?",
    "Turn on the kitchen lights.",
    "Harvest the garden tomorrow.",
)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = Settings().slm.max_reply_tokens
STORY = [{"role": "user", "content": "Tell me a short story about a cat and a boat."}]
STORY_TOKENS = 24


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def detections(models_dir: Path, wake_word: str, pcm: bytes) -> int:
    """How often a fresh detector for ``wake_word`` fires on ``pcm``, fed in 10 ms frames."""
    detector = WakeWordDetector(
        models_dir / "micro-wakeword" / f"{wake_word}.json",
        probability_cutoff=None, refractory_ms=Settings().wake.refractory_ms,
    )  # fmt: skip
    return sum(
        detector.process(pcm[start : start + FRAME_BYTES])
        for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)
    )


@pytest.fixture(scope="module")
def slm(engines: Engines) -> SlmEngine:
    assert engines.slm is not None
    return engines.slm


def test_piper_speaks_a_sentence(tts: PiperTts) -> None:
    sentence = "The quick brown fox jumps over the lazy dog."
    pcm = tts.synthesize_all(sentence)
    assert tts.sample_rate_hz == 22_050
    assert len(pcm) % 2 == 0
    audio = samples(pcm)
    duration_s = audio.size / tts.sample_rate_hz
    words = len(sentence.split())
    assert 0.15 * words < duration_s < 0.8 * words, duration_s
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 500, rms
    assert np.abs(audio).max() > 4000
    # Speech has pauses: the quietest 50 ms windows are far below the loudest.
    windows = audio[: audio.size // 1102 * 1102].reshape(-1, 1102)
    levels = np.sqrt(np.mean(windows**2, axis=1))
    assert levels.min() < 0.1 * levels.max()


def test_piper_gives_one_chunk_per_sentence(tts: PiperTts) -> None:
    chunks = list(tts.synthesize("Good morning. The weather is fine. Bye."))
    assert len(chunks) == 3
    assert all(len(chunk) > 0.2 * tts.sample_rate_hz * 2 for chunk in chunks)


@pytest.mark.parametrize(
    "sentence",
    ["What is the capital of France?", "Set a timer for five minutes and turn off the lights."],
)
def test_whisper_transcribes_piper_speech(tts: PiperTts, engines: Engines, sentence: str) -> None:
    assert engines.asr is not None
    pcm = compose(tts, [0.3, sentence, 0.5])
    transcript = engines.asr.transcribe(pcm)
    assert transcript.audio_ms == pytest.approx(len(pcm) / 2 / PIPELINE_RATE_HZ * 1000)
    wer = jiwer.wer(normalize(sentence), normalize(transcript.text))
    assert wer <= 0.2, (transcript.text, wer)


def test_hey_jarvis_fires_once_and_other_speech_does_not(tts: PiperTts, models_dir: Path) -> None:
    assert detections(models_dir, "hey_jarvis", compose(tts, [0.5, "Hey Jarvis.", 1.0])) == 1
    for sentence in OTHER_SPEECH:
        speech = compose(tts, [0.5, sentence, 1.0])
        assert detections(models_dir, "hey_jarvis", speech) == 0, sentence


def test_okay_nabu_has_its_own_model(tts: PiperTts, models_dir: Path) -> None:
    assert detections(models_dir, "okay_nabu", compose(tts, [0.5, "Okay Nabu.", 1.0])) == 1
    assert detections(models_dir, "okay_nabu", compose(tts, [0.5, "Hey Jarvis.", 1.0])) == 0


def test_wake_word_inside_a_sentence_and_silence(tts: PiperTts, models_dir: Path) -> None:
    speech = compose(tts, [0.5, "Hey Jarvis, what time is it?", 1.0])
    assert detections(models_dir, "hey_jarvis", speech) == 1
    assert detections(models_dir, "hey_jarvis", bytes(PIPELINE_RATE_HZ * 2 * 3)) == 0


def test_slm_knows_the_capital_of_france(slm_float32: SlmEngine) -> None:
    answer = slm_float32.reply(DEFAULT_SYSTEM_PROMPT, QUESTION, max_tokens=MAX_TOKENS)
    assert "Paris" in answer, answer


@pytest.fixture(scope="module")
def story_deltas(slm: SlmEngine) -> list[str]:
    return list(slm.stream_reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=STORY_TOKENS))


def test_slm_stream_concatenates_to_the_reply(slm: SlmEngine, story_deltas: list[str]) -> None:
    assert len(story_deltas) > 5
    assert all(story_deltas)
    assert "".join(story_deltas) == slm.reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=STORY_TOKENS)


def test_slm_cancel_stops_generation(slm: SlmEngine, story_deltas: list[str]) -> None:
    cancel = threading.Event()
    deltas: list[str] = []
    for delta in slm.stream_reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=STORY_TOKENS,
                                  cancel=cancel):  # fmt: skip
        deltas.append(delta)
        if len(deltas) == 2:
            cancel.set()
    assert deltas == story_deltas[:2], "nothing more comes after the cancel"

    cancelled_before = threading.Event()
    cancelled_before.set()
    stream = slm.stream_reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=STORY_TOKENS,
                              cancel=cancelled_before)  # fmt: skip
    assert list(stream) == []


def test_slm_makes_no_progress_while_paused_and_then_finishes(
    slm: SlmEngine, story_deltas: list[str]
) -> None:
    """Cleared, ``proceed`` holds generation between tokens (for under MAX_PAUSE_S);
    set again, the reply goes on to the same text as an unpaused one."""
    proceed = threading.Event()
    proceed.set()
    deltas: list[str] = []
    two_in = threading.Event()

    def consume() -> None:
        stream = slm.stream_reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=STORY_TOKENS,
                                  proceed=proceed)  # fmt: skip
        for delta in stream:
            deltas.append(delta)
            if len(deltas) == 2:
                proceed.clear()
                two_in.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert two_in.wait(60)
    time.sleep(MAX_PAUSE_S * 0.3)  # what was made before the pause arrives
    paused_at = len(deltas)
    time.sleep(MAX_PAUSE_S * 0.3)
    assert len(deltas) == paused_at < len(story_deltas), "nothing is made while paused"
    proceed.set()
    consumer.join(60)
    assert "".join(deltas) == "".join(story_deltas)


def test_slm_respects_max_tokens(slm: SlmEngine) -> None:
    short = slm.reply(DEFAULT_SYSTEM_PROMPT, STORY, max_tokens=4)
    assert 1 <= slm.count_tokens(short) <= 4, short


def test_whisper_hears_nothing_in_silence_noise_and_hum(engines: Engines) -> None:
    """Prompted with command words, Whisper would decode noise to "Volume down.";
    the no-speech check must turn all of these into an empty transcript."""
    assert engines.asr is not None
    rng = np.random.default_rng(5)
    seconds = np.arange(PIPELINE_RATE_HZ * 1.5) / PIPELINE_RATE_HZ
    sounds = {
        "silence": np.zeros(seconds.size),
        "noise": rng.normal(0, 330, seconds.size),
        "loud noise": rng.normal(0, 3300, seconds.size),
        "hum": 1600 * np.sin(2 * np.pi * 100 * seconds),
    }
    for name, audio in sounds.items():
        pcm = np.clip(audio, -32768, 32767).astype("<i2").tobytes()
        assert engines.asr.transcribe(pcm).text == "", name


def test_whisper_vocabulary_prompt_hears_volume_up(tts: PiperTts, engines: Engines) -> None:
    """Without the command vocabulary tiny.en hears this voice say "value up"."""
    assert engines.asr is not None
    for command in ("Volume up.", "Volume down."):
        heard = engines.asr.transcribe(compose(tts, [0.3, command, 0.15]))
        assert heard.trimmed
        assert normalize(heard.text) == normalize(command), heard.text


def test_piper_keeps_short_phrases_and_replays_them(tts: PiperTts) -> None:
    phrase = "Kettle is on."
    first = list(tts.synthesize(phrase))
    again = list(tts.synthesize(phrase))
    assert again == first, "the second time comes from the phrase cache"
    assert sum(len(chunk) for chunk in first) > 0.3 * tts.sample_rate_hz * 2
    # Repeatable synthesis (tests, benchmark prompts) never reads the cache, and
    # speech synthesised with sampling noise differs run to run.
    fresh = [tts.synthesize_all(phrase, repeatable=True) for _ in range(2)]
    assert fresh[0] == fresh[1] != b"".join(first)


def test_piper_does_not_keep_long_text(tts: PiperTts) -> None:
    long_text = "This sentence is far too long to be kept as a phrase for later replay."
    assert list(tts.synthesize(long_text)) != list(tts.synthesize(long_text))


def test_whisper_without_vocabulary_still_hears_silence_as_nothing(
    tts: PiperTts, models_dir: Path
) -> None:
    plain = WhisperAsr(models_dir / "whisper-tiny.en", AsrSettings(vocabulary_prompt=""))
    assert plain.transcribe(bytes(PIPELINE_RATE_HZ * 2)).text == ""
    heard = plain.transcribe(compose(tts, [0.3, "What time is it?", 0.15]))
    assert heard.trimmed and normalize(heard.text) == normalize("What time is it?")


def test_prepared_phrases_play_without_a_fresh_synthesis(tts: PiperTts) -> None:
    phrases = ("Kettle boiled.", "Door locked.")
    tts.prepare_phrases("test", phrases)
    prepared = {phrase: list(tts.synthesize(phrase)) for phrase in phrases}
    # Speech synthesised with sampling noise differs run to run, so equal audio
    # on a second read shows it came from the cache.
    assert all(list(tts.synthesize(p)) == audio for p, audio in prepared.items())
    assert all(sum(map(len, audio)) > 0.3 * tts.sample_rate_hz * 2 for audio in prepared.values())
    # Re-pinning keeps what is already there and drops what is no longer wanted.
    tts.prepare_phrases("test", ("Door locked.",))
    assert tts.phrases.pinned("test") == {"Door locked."}
    assert list(tts.synthesize("Door locked.")) == prepared["Door locked."]
    with pytest.raises(ValueError, match="1-48 characters"):
        tts.prepare_phrases("test", ("x" * 49,))


def test_whisper_skips_decoding_a_transcript_no_longer_wanted(
    engines: Engines, tts: PiperTts
) -> None:
    assert engines.asr is not None
    speech = compose(tts, [0.3, "What time is it?", 0.15])
    abandon = threading.Event()
    assert normalize(engines.asr.transcribe(speech, abandon=abandon).text) == "what time is it"
    abandon.set()
    with pytest.raises(TranscriptionAbandoned):
        engines.asr.transcribe(speech, abandon=abandon)
