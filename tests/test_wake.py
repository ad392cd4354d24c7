"""Wake words with the real engines: openWakeWord beside microWakeWord, `both`, models
of your own by path (checked at load), and the settings that tune them. Speech is
synthesised at test time with the Piper voice, and with espeak-ng where installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from voiced.audio.format import FRAME_SAMPLES
from voiced.bench.wake_sets import WAKE_PHRASES
from voiced.engines.loader import make_wake_detector, resolve_model_paths
from voiced.engines.tts import PiperTts
from voiced.engines.wake import WakeWordDetector
from voiced.engines.wake_names import OPEN_WAKE_WORDS
from voiced.engines.wake_open import OpenWakeWordDetector
from voiced.engines.wake_set import Detector
from voiced.errors import ConfigError, ModelError
from voiced.models.manifest import Role
from voiced.settings import Settings, parse_settings
from voiced.speech_synth import compose

OTHER_SPEECH = (
    "What time is it?",
    "Set a timer for ten minutes.",
    "Hey, are you there? Turn the lights off in the kitchen.",
    "Harvest the garden tomorrow, then call Jasmine and Marvin.",
)
ESPEAK = shutil.which("espeak-ng")
FRAME_BYTES = FRAME_SAMPLES * 2


def feed(detector: Detector, pcm: bytes, frame_bytes: int = FRAME_BYTES) -> int:
    """Detections of ``detector`` (reset first) on ``pcm`` fed in 10 ms frames."""
    detector.reset()
    return sum(
        detector.process(pcm[start : start + frame_bytes])
        for start in range(0, len(pcm) - frame_bytes + 1, frame_bytes)
    )


@pytest.fixture(scope="module")
def open_dir(models_dir: Path) -> Path:
    return models_dir / "open-wakeword"


def open_detector(open_dir: Path, *words: str, **tuning: int | float) -> OpenWakeWordDetector:
    options: dict[str, int | float] = {"threshold": 0.5, "debounce_ms": 0, "refractory_ms": 2000}
    options.update(tuning)
    return OpenWakeWordDetector(
        [open_dir / f"{word}.tflite" for word in words],
        open_dir,
        threshold=float(options["threshold"]),
        debounce_ms=int(options["debounce_ms"]),
        refractory_ms=int(options["refractory_ms"]),
    )


@pytest.fixture(scope="module")
def all_open(open_dir: Path) -> OpenWakeWordDetector:
    """Every built-in openWakeWord model off one feature stream."""
    return open_detector(open_dir, *OPEN_WAKE_WORDS)


def fired_words(detector: OpenWakeWordDetector, pcm: bytes) -> list[str]:
    detector.reset()
    fired: list[str] = []
    for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        if detector.process(pcm[start : start + FRAME_BYTES]):
            fired += detector.fired
    return fired


@pytest.mark.parametrize("word", OPEN_WAKE_WORDS)
def test_each_open_model_fires_once_on_its_own_phrase(
    tts: PiperTts, all_open: OpenWakeWordDetector, word: str
) -> None:
    speech = compose(tts, [0.5, WAKE_PHRASES[word], 1.0])
    assert fired_words(all_open, speech) == [word]


def test_open_models_stay_quiet_on_other_speech(
    tts: PiperTts, all_open: OpenWakeWordDetector
) -> None:
    for sentence in OTHER_SPEECH:
        assert fired_words(all_open, compose(tts, [0.5, sentence, 1.0])) == [], sentence


def test_open_wake_word_inside_a_sentence_and_in_silence(tts: PiperTts, open_dir: Path) -> None:
    detector = open_detector(open_dir, "hey_jarvis")
    assert feed(detector, compose(tts, [0.5, "Hey Jarvis, what time is it?", 1.0])) == 1
    assert feed(detector, bytes(16_000 * 2 * 3)) == 0


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
@pytest.mark.parametrize("voice", ["en-us", "en-gb", "en-us+f3"])
def test_open_hears_hey_jarvis_in_espeak_voices(open_dir: Path, voice: str) -> None:
    from voiced.bench.wake_sets import _espeak

    speech = bytes(8000 * 2) + _espeak("Hey Jarvis.", voice, 160) + bytes(16_000 * 2)
    assert feed(open_detector(open_dir, "hey_jarvis"), speech) == 1


def test_the_refractory_period_and_the_debounce_are_counted_in_audio(
    tts: PiperTts, open_dir: Path
) -> None:
    twice = compose(tts, [0.5, "Hey Jarvis.", 0.6, "Hey Jarvis.", 1.0])
    assert feed(open_detector(open_dir, "hey_jarvis", refractory_ms=0), twice) == 2
    assert feed(open_detector(open_dir, "hey_jarvis", refractory_ms=5000), twice) == 1
    once = compose(tts, [0.5, "Hey Jarvis.", 1.0])
    # One utterance never fires twice, even with no refractory period.
    assert feed(open_detector(open_dir, "hey_jarvis", refractory_ms=0), once) == 1
    # The score is over the threshold for a few 80 ms steps, never for 2 s.
    assert feed(open_detector(open_dir, "hey_jarvis", debounce_ms=2000), once) == 0


@pytest.mark.parametrize("engine", ["micro", "open", "both"])
def test_each_engine_wakes_once_for_one_phrase(
    tts: PiperTts, models_dir: Path, engine: str
) -> None:
    settings = parse_settings(f'[wake]\nengine = "{engine}"\n')
    detector = make_wake_detector(settings, resolve_model_paths(settings, models_dir, {Role.WAKE}))
    assert feed(detector, compose(tts, [0.5, "Hey Jarvis.", 1.0])) == 1
    assert feed(detector, compose(tts, [0.5, "What time is it?", 1.0])) == 0
    if engine == "both":
        # Both models heard it (each alone fires once), and the set woke once.
        assert [feed(d, compose(tts, [0.5, "Hey Jarvis.", 1.0])) for d in detector.detectors] == [
            1,
            1,
        ]


def test_the_default_engine_is_openwakeword_on_hey_jarvis() -> None:
    assert (Settings().wake.engine, Settings().wake.model) == ("open", "hey_jarvis")


def test_own_models_by_path(tts: PiperTts, models_dir: Path, tmp_path: Path) -> None:
    own_open = tmp_path / "my_word.tflite"
    shutil.copy(models_dir / "open-wakeword" / "hey_jarvis.tflite", own_open)
    for name in ("okay_nabu.json", "okay_nabu.tflite"):
        shutil.copy(models_dir / "micro-wakeword" / name, tmp_path / name)
    phrases = {own_open: "Hey Jarvis.", tmp_path / "okay_nabu.json": "Okay Nabu."}
    for (engine, path), phrase in zip(
        [("open", own_open), ("micro", tmp_path / "okay_nabu.json")], phrases.values(), strict=True
    ):
        settings = parse_settings(f'[wake]\nengine = "{engine}"\nmodel = "{path}"\n')
        paths = resolve_model_paths(settings, models_dir, {Role.WAKE})
        assert paths.wake == {engine: path}
        assert feed(make_wake_detector(settings, paths), compose(tts, [0.5, phrase, 1.0])) == 1


def _write_bad_models(tmp_path: Path, models_dir: Path) -> dict[str, tuple[str, Path, str]]:
    """name -> (engine, path, what the error says). Each of these, handed to the
    runtime unchecked, would crash the process (segmentation fault) or raise a
    KeyError; checked first, each is a ModelError naming the file."""
    micro_dir, open_dir = models_dir / "micro-wakeword", models_dir / "open-wakeword"
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model\n")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((open_dir / "okay_nabu.tflite").read_bytes()[:1000])
    micro_as_open = tmp_path / "micro_model.tflite"
    shutil.copy(micro_dir / "alexa.tflite", micro_as_open)
    open_in_json = tmp_path / "open_in.json"
    config = json.loads((micro_dir / "alexa.json").read_text())
    shutil.copy(open_dir / "alexa.tflite", tmp_path / "open_alexa.tflite")
    open_in_json.write_text(json.dumps({**config, "model": "open_alexa.tflite"}))
    no_cutoff = tmp_path / "no_cutoff.json"
    shutil.copy(micro_dir / "alexa.tflite", tmp_path / "alexa.tflite")
    no_cutoff.write_text(json.dumps({**config, "micro": {"sliding_window_size": 5}}))
    escaping = tmp_path / "escaping.json"
    escaping.write_text(json.dumps({**config, "model": "../../etc/passwd"}))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    return {
        "text file": ("open", text, "is not a TensorFlow Lite model"),
        "truncated": ("open", truncated, "is not a valid TensorFlow Lite model"),
        "micro model for open": ("open", micro_as_open, "is not an openWakeWord model"),
        "open model for micro": ("micro", open_in_json, "is not a microWakeWord model"),
        "missing cutoff": ("micro", no_cutoff, "`micro.probability_cutoff` is missing or wrong"),
        "model outside its folder": ("micro", escaping, "`model` is missing or wrong"),
        "not json": ("micro", not_json, "cannot read the wake-word model"),
        "missing": ("open", tmp_path / "absent.tflite", "does not exist"),
    }


def test_bad_model_files_are_refused_with_a_clear_error(tmp_path: Path, models_dir: Path) -> None:
    for name, (engine, path, says) in _write_bad_models(tmp_path, models_dir).items():
        settings = parse_settings(f'[wake]\nengine = "{engine}"\nmodel = "{path}"\n')
        with pytest.raises(ModelError) as caught:
            make_wake_detector(settings, resolve_model_paths(settings, models_dir, {Role.WAKE}))
        message = caught.value.render()
        assert says in message and str(path.name) in message, (name, message)
        assert "wake.model" in message and "fix:" in message, (name, message)


def test_micro_detector_refuses_an_open_model_directly(tmp_path: Path, models_dir: Path) -> None:
    engine, path, says = _write_bad_models(tmp_path, models_dir)["open model for micro"]
    with pytest.raises(ModelError, match=says):
        WakeWordDetector(path, probability_cutoff=None, refractory_ms=0)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('engine = "porcupine"', "`wake.engine` must be one of both, micro, open"),
        ('engine = "micro"\nmodel = "hey_rhasspy"', "line 4: `wake.model` 'hey_rhasspy'"),
        ('engine = "micro"\nmodel = "/x/model.tflite"', "a path to a microWakeWord .json"),
        ('engine = "open"\nmodel = "/x/model.json"', "a path to an openWakeWord .tflite"),
        ('engine = "both"\nmodel = "/x/model.tflite"', "with engine 'both' the model must be"),
        ('model = "hey_jarvis\\u0000.tflite"', "NUL"),
        ("threshold = 1.5", "`wake.threshold` must be strictly between 0 and 1"),
        ("threshold = 0", "`wake.threshold` must be strictly between 0 and 1"),
        ("debounce_ms = -80", "`wake.debounce_ms` must be between 0 and 2000"),
        ('debounce_ms = "80"', "`wake.debounce_ms` must be int"),
        ("refractory_ms = 1e9", "`wake.refractory_ms` must be int"),
        ("refractory_ms = 600000", "`wake.refractory_ms` must be between 0 and 60000"),
        ("engine = 1", "`wake.engine` must be str"),
        ('[[wake.words]]\nmodel = "alexa"\naction = "dance"', "`wake.words.action` must be one"),
        ('[[wake.words]]\naction = "stop"', "[[wake.words]] number 1: `model` '': it is missing"),
        ('[[wake.words]]\nmodel = "hey_jarvis"', "is the same word as wake.model"),
        ('engine = "micro"\n[[wake.words]]\nmodel = "hey_rhasspy"', "number 1: `model`"),
        (
            '[[wake.words]]\nmodel = "alexa"\n[[wake.words]]\nmodel = "/x/alexa.tflite"',
            "number 2: `model` '/x/alexa.tflite' is the same word as [[wake.words]] number 1",
        ),
        (
            "\n".join([f'[[wake.words]]\nmodel = "/x/w{n}.tflite"' for n in range(5)]),
            "lists 5 words; at most 4",
        ),
        ('words = "alexa"', "`wake.words` must be a list of tables"),
        ('[[wake.words]]\nmodel = "alexa"\nvolume = 3', "unknown key `wake.words.volume`"),
    ],
)
def test_wake_settings_errors_name_the_key(toml: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"# wake\n[wake]\n{toml}\n", source="voiced.toml")
    assert says in caught.value.render()


def test_unknown_user_path_forms_are_model_errors(models_dir: Path) -> None:
    for model in ("~no-such-user-voiced/x.tflite", "/no/such/dir/x.tflite"):
        settings = parse_settings(f'[wake]\nmodel = "{model}"\n')
        with pytest.raises(ModelError, match="wake.model"):
            resolve_model_paths(settings, models_dir, {Role.WAKE})


def test_several_wake_words_at_once_each_with_its_action(tts: PiperTts, open_dir: Path) -> None:
    """ "hey jarvis" to ask, "alexa" standing in for a stop word: one feature stream,
    each word reported with its own action, exactly once each."""
    from voiced.engines.wake_set import Detection, WakeSet

    words = WakeSet(
        [open_detector(open_dir, "hey_jarvis", "alexa")],
        refractory_ms=2000,
        actions={"alexa": "stop"},
    )
    heard: list[Detection] = []
    speech = compose(tts, [0.5, "Hey Jarvis.", 2.5, "Alexa.", 2.5, "What time is it?", 1.0])
    words.reset()
    for start in range(0, len(speech) - FRAME_BYTES + 1, FRAME_BYTES):
        if words.process(speech[start : start + FRAME_BYTES]):
            heard += words.detections
    assert heard == [Detection("open:hey_jarvis", "wake"), Detection("open:alexa", "stop")]


@pytest.mark.parametrize("engine", ["micro", "open", "both"])
def test_a_configured_stop_word_is_heard_with_its_action(
    tts: PiperTts, models_dir: Path, engine: str
) -> None:
    """[[wake.words]] from the config, through the loader, for each engine."""
    from voiced.engines.wake_set import WakeSet

    settings = parse_settings(
        f'[wake]\nengine = "{engine}"\n[[wake.words]]\nmodel = "alexa"\naction = "stop"\n'
    )
    detector = make_wake_detector(settings, resolve_model_paths(settings, models_dir, {Role.WAKE}))
    assert isinstance(detector, WakeSet)
    speech = compose(tts, [0.5, "Hey Jarvis.", 2.5, "Alexa.", 2.5, "What time is it?", 1.0])
    detector.reset()
    actions: list[set[str]] = []
    for start in range(0, len(speech) - FRAME_BYTES + 1, FRAME_BYTES):
        if detector.process(speech[start : start + FRAME_BYTES]):
            actions.append({d.action for d in detector.detections})
    assert actions == [{"wake"}, {"stop"}]


def test_long_silence_is_not_scored_and_the_word_after_it_is_heard(
    tts: PiperTts, open_dir: Path
) -> None:
    detector = open_detector(open_dir, "hey_jarvis")
    speech = compose(tts, [6.0, "Hey Jarvis.", 5.0, "Hey Jarvis.", 1.0])
    assert feed(detector, speech) == 2
    # Most of 6 s + 5 s of silence skipped (each after its first 2 s), nothing else.
    assert 80 <= detector.skipped_chunks <= 110
    detector.skipped_chunks = 0
    assert feed(detector, compose(tts, [0.5, "What time is it? Set a timer.", 1.0])) == 0
    assert detector.skipped_chunks == 0
