"""What ``describe`` is answered with: only what this server serves.

Home Assistant makes a satellite device of an ``info`` whose ``satellite`` is
installed, and STT, TTS, wake-word and conversation entities of the installed
programs; a satellite's detection ``name`` is mapped to a wake model's ``phrase``
here (so two satellites that heard one "Hey Jarvis" wake Home Assistant once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    Satellite,
    TtsProgram,
    TtsVoice,
    WakeModel,
    WakeProgram,
)

import voiced

ATTRIBUTION = Attribution(name="voiced", url="https://github.com/voiced")
_VERSION_SUFFIX = re.compile(r"_v\d+(\.\d+)*$")


@dataclass(frozen=True, slots=True)
class WakeWordInfo:
    name: str
    """The model's name, sent as ``detection.name`` (``hey_jarvis``)."""
    phrase: str
    """What is said (``Hey Jarvis``)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What is served, and the names it is described with."""

    name: str
    """The device's name (``voiced <device id>``)."""
    area: str
    language: str
    asr_model: str | None
    """None: no speech-to-text service."""
    tts_voice: str | None
    wake_words: tuple[WakeWordInfo, ...]
    """The wake words heard locally (satellite) and served (wake)."""
    wake_service: bool
    handle: bool
    satellite: bool


def wake_words_of(detector: object) -> tuple[WakeWordInfo, ...]:
    """The words a WakeSet (or one detector) listens for: a microWakeWord model says
    its phrase (``wake_word``); an openWakeWord name is made readable."""
    detectors: Sequence[object] = getattr(detector, "detectors", [detector])
    words: dict[str, WakeWordInfo] = {}
    for one in detectors:
        names = [n for n in str(getattr(one, "name", "")).split("+") if n]
        said = str(getattr(one, "wake_word", ""))
        for name in names:
            phrase = said if len(names) == 1 and said and said != name else _readable(name)
            words.setdefault(name, WakeWordInfo(name, phrase))
    return tuple(words.values())


def _readable(name: str) -> str:
    return _VERSION_SUFFIX.sub("", name).replace("_", " ").strip().title()


def build_info(offer: Offer) -> Info:
    version = voiced.__version__
    languages = [offer.language]
    info = Info()
    if offer.asr_model is not None:
        model = AsrModel(
            name=offer.asr_model,
            attribution=ATTRIBUTION,
            installed=True,
            description=f"Whisper {offer.asr_model} (voiced)",
            version=version,
            languages=languages,
        )
        info.asr = [
            AsrProgram(
                name="voiced-asr",
                attribution=ATTRIBUTION,
                installed=True,
                description="voiced speech-to-text",
                version=version,
                models=[model],
                supports_transcript_streaming=False,
            )
        ]
    if offer.tts_voice is not None:
        voice = TtsVoice(
            name=offer.tts_voice,
            attribution=ATTRIBUTION,
            installed=True,
            description=f"Piper {offer.tts_voice} (voiced)",
            version=version,
            languages=languages,
        )
        # Streaming is not advertised: Home Assistant then sends the whole text in
        # one `synthesize` (after any synthesize-start/chunk/stop, which are ignored),
        # and voiced streams the audio sentence by sentence all the same.
        info.tts = [
            TtsProgram(
                name="voiced-tts",
                attribution=ATTRIBUTION,
                installed=True,
                description="voiced text-to-speech",
                version=version,
                voices=[voice],
                supports_synthesize_streaming=False,
            )
        ]
    if offer.wake_words and (offer.wake_service or offer.satellite):
        models = [
            WakeModel(
                name=w.name,
                attribution=ATTRIBUTION,
                installed=True,
                description=w.phrase,
                version=version,
                languages=languages,
                phrase=w.phrase,
            )
            for w in offer.wake_words
        ]
        info.wake = [
            WakeProgram(
                name="voiced-wake",
                attribution=ATTRIBUTION,
                installed=True,
                description="voiced wake word",
                version=version,
                models=models,
            )
        ]
    if offer.handle:
        handle_model = HandleModel(
            name="voiced-intents",
            attribution=ATTRIBUTION,
            installed=True,
            description="voiced's intents, then its language model",
            version=version,
            languages=languages,
        )
        info.handle = [
            HandleProgram(
                name="voiced-handle",
                attribution=ATTRIBUTION,
                installed=True,
                description="voiced conversation",
                version=version,
                models=[handle_model],
                supports_home_control=False,
            )
        ]
    if offer.satellite:
        info.satellite = Satellite(
            name=offer.name,
            attribution=ATTRIBUTION,
            installed=True,
            description="voiced voice assistant",
            version=version,
            area=offer.area or None,
            has_vad=False,
            active_wake_words=[w.name for w in offer.wake_words],
            max_active_wake_words=len(offer.wake_words),
            supports_trigger=False,
        )
    return info
