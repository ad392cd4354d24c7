"""The control plane on the real pipeline: a spoken light command reaches a real
mosquitto, the broker dies and comes back without the voice path noticing, and
the status page shows the turn in a real headless Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.test_mqtt import MOSQUITTO, Broker, Observer, until
from tests.test_user_intents import EXAMPLE
from voiced.audio.sinks import AlignedSink, MemoryWriter
from voiced.audio.sources import WavFileSource
from voiced.bench.measure import end_of_speech_sample
from voiced.control.plane import ControlPlane, mqtt_publisher
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.intents.user import load_user_intents
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import EventBus
from voiced.pipeline.runner import run_stream
from voiced.pipeline.turn import TurnRecord
from voiced.settings import HttpSettings, MqttSettings, Settings, parse_settings
from voiced.speech_synth import compose, speak_16k, write_wav

pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed"),
]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LIGHTS_CONFIG = EXAMPLE  # the example, as written


def _settings(broker: Broker) -> Settings:
    settings = parse_settings(LIGHTS_CONFIG)
    return dataclasses.replace(
        settings,
        mqtt=MqttSettings(host="127.0.0.1", port=broker.port, device_id="e2e"),
        http=HttpSettings(listen="127.0.0.1:0"),
    )


def test_spoken_light_command_and_broker_outage(
    engines: Engines, tts: PiperTts, tmp_path: Path
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    command = speak_16k(tts, "Turn on the kitchen lights.")
    lead = compose(tts, [0.3])
    speech = lead + command + compose(tts, [3.0, "What time is it?", 9.0,
                                             "Switch on the living room light.", 3.0])  # fmt: skip
    eos_ms = (len(lead) // 2 + end_of_speech_sample(command)) / 16
    wav = tmp_path / "in.wav"
    write_wav(wav, speech)
    settings = _settings(broker)
    writer = MemoryWriter()
    turns: list[TurnRecord] = []
    arrivals: dict[str, float] = {}

    async def main() -> None:
        publisher = mqtt_publisher(settings)
        intents = load_user_intents(settings.intent, publisher=publisher)
        assistant = Assistant(settings, engines, AlignedSink(writer), EventBus(),
                              wake_mode=False, extra_intents=list(intents))  # fmt: skip
        assistant.on_turn_done.append(turns.append)
        plane = await ControlPlane.start(assistant, settings, publisher)
        assert plane.bridge is not None
        bridge = plane.bridge
        await asyncio.wait_for(until(lambda: bridge.connected), 30)
        async with Observer(broker.port, "home/+/light/set") as before:
            stream = asyncio.create_task(run_stream(
                assistant, WavFileSource(wav, realtime=True), realtime=True))  # fmt: skip
            await asyncio.wait_for(before.wait("home/kitchen/light/set", b"ON"), 60)
            arrivals["kitchen"] = assistant.now_ms()
        await asyncio.wait_for(until(lambda: len(turns) >= 1), 60)
        await asyncio.to_thread(broker.kill)  # the broker dies mid-run
        await asyncio.wait_for(until(lambda: len(turns) >= 2), 60)
        assert turns[1].intent == "time" and turns[1].outcome == "answered"
        await asyncio.to_thread(broker.start)  # ... and comes back
        # Watch before the bridge is back: a command spoken while the broker was
        # away is held and goes out as soon as the bridge reconnects.
        async with Observer(broker.port, "home/+/light/set") as after:
            await asyncio.wait_for(until(lambda: bridge.connected), 60)
            try:
                await asyncio.wait_for(after.wait("home/living_room/light/set", b"ON"), 90)
            except TimeoutError:
                pytest.fail(f"no living room ON; turns: {[t.to_dict() for t in turns]}")
        await asyncio.wait_for(stream, 120)
        await plane.close()
        await assistant.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        broker.kill()
    spoken = voice_turns_from(turns)
    assert [t.intent for t in spoken] == ["light_on", "time", "light_on"]
    assert spoken[0].reply == "Turning on the kitchen lights."
    assert spoken[2].slots.get("area") == "living room"
    output = np.frombuffer(bytes(writer.pcm), dtype="<i2")
    first = spoken[0].first_audio_ms
    assert first is not None and np.abs(output[int(first * 16) : int(first * 16) + 8000]).max() > 0
    latency_ms = arrivals["kitchen"] - eos_ms
    print(f"end of speech -> MQTT message for the light intent: {latency_ms:.0f} ms")
    assert latency_ms > 0


def voice_turns_from(turns: list[TurnRecord]) -> list[TurnRecord]:
    return [t for t in turns if t.kind == "voice"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_status_page_shows_a_turn_in_chromium(engines: Engines, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), http=HttpSettings(listen="127.0.0.1:0"))
    ready = threading.Event()
    done = threading.Event()
    port: list[int] = []

    async def main() -> None:
        assistant = Assistant(settings, engines, AlignedSink(MemoryWriter()), EventBus(),
                              wake_mode=False)  # fmt: skip
        plane = await ControlPlane.start(assistant, settings)
        assert plane.http is not None
        await assistant.ask("What day is it today?", speak=False)
        port.append(plane.http.port)
        ready.set()
        await asyncio.to_thread(done.wait, 120)
        await plane.close()
        await assistant.close()

    server = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    server.start()
    try:
        assert ready.wait(120)
        url = f"http://127.0.0.1:{port[0]}/"
        assert b"<html" in urllib.request.urlopen(url, timeout=10).read().lower()  # noqa: S310
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=4000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        done.set()
        server.join(30)
    assert "What day is it today?" in dom.stdout, dom.stderr[-2000:]
    assert "Today is" in dom.stdout
