"""Several rooms, the real thing: three `voiced run` daemons on one real mosquitto hear
the same spoken session, each at its own gain and onset, fed in real time through
their stdin as one room would feed three microphones. Counts per wake word: exactly
one reply, from the device that heard it loudest.

The loudest device is also the last to hear each wake word (40 ms after the
quietest), so "first wins" would pick the wrong one.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.test_mqtt import MOSQUITTO, Broker
from voiced.engines.tts import PiperTts
from voiced.speech_synth import compose

pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed"),
]
REPO = Path(__file__).resolve().parent.parent
RATE = 16_000
CHUNK_S = 0.03
DEVICES = ("kitchen", "hall", "living")
GAINS_DB = (0.0, -6.0, -12.0)
ONSETS_MS = (40, 20, 0)
NOISE_RMS = 30.0
"""About -60 dBFS of room noise, the same level at each microphone."""
READY_TIMEOUT_S = 240.0


@dataclass
class Device:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    trace: Path
    written_samples: int = 0

    def ready(self) -> bool:
        return "ready:" in self.log.read_text(errors="replace")

    def turns(self) -> list[dict[str, object]]:
        if not self.trace.exists():
            return []
        return [json.loads(line) for line in self.trace.read_text().splitlines() if line]


@dataclass
class Wake:
    phase: str
    start_sample: int
    """Where it starts in every device's stream (each stream began with the first
    piece written to it), before the device's own onset."""


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32)


def write_config(folder: Path, name: str, port: int) -> Path:
    config = folder / f"{name}.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "{name}"\n'
        'commands = ["mute", "stop"]\n'
        f'[house]\narea = "{name}"\n'
        "[slm]\nenabled = false\n"  # the questions are all intents: no model to load
    )
    return config


def spawn(folder: Path, name: str, port: int, models_dir: Path) -> Device:
    log, trace = folder / f"{name}.log", folder / f"{name}.jsonl"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "voiced", "run", "--config",
             str(write_config(folder, name, port)), "--input", "-", "--output", "null",
             "--realtime", "--trace", str(trace), "--models-dir", str(models_dir)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log_file,
            env={**os.environ, "VOICED_LOG_LEVEL": "info"},
        )  # fmt: skip
    return Device(name, process, log, trace)


def publish(port: int, topic: str, payload: str) -> None:
    from paho.mqtt import publish as paho_publish

    paho_publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port)


def all_reconnected(devices: list[Device]) -> Callable[[], bool]:
    """True once every device's bridge has logged that the broker is back."""
    before = [d.log.read_text(errors="replace").count("reachable again") for d in devices]

    def reconnected() -> bool:
        now = [d.log.read_text(errors="replace").count("reachable again") for d in devices]
        return all(n > b for n, b in zip(now, before, strict=True))

    return reconnected


class Room:
    """Feeds every device its own copy of the room, at 1x, in 30 ms pieces."""

    def __init__(self, devices: list[Device], seed: int = 7) -> None:
        self.devices = devices
        self.rng = [np.random.default_rng(seed + n) for n in range(len(devices))]
        self.pending = [np.zeros(ONSETS_MS[n] * RATE // 1000, np.float32)
                        for n in range(len(devices))]  # fmt: skip
        self.next_at = time.monotonic()

    def play(self, pcm: np.ndarray) -> None:
        step = int(CHUNK_S * RATE)
        for start in range(0, pcm.size, step):
            piece = pcm[start : start + step]
            for n, device in enumerate(self.devices):
                heard = np.concatenate([self.pending[n], piece * 10 ** (GAINS_DB[n] / 20)])
                out, self.pending[n] = heard[: piece.size], heard[piece.size :]
                out = out + self.rng[n].normal(0, NOISE_RMS, out.size)
                data = np.clip(out, -32768, 32767).astype("<i2").tobytes()
                if device.process.poll() is None and device.process.stdin is not None:
                    try:
                        device.process.stdin.write(data)
                        device.process.stdin.flush()
                    except BrokenPipeError:
                        pass
                device.written_samples += piece.size
            # Never ahead of real time, and never catching up in a burst either:
            # the devices must hear the room as it happens.
            self.next_at = max(self.next_at + piece.size / RATE, time.monotonic() - CHUNK_S)
            delay = self.next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def silence_until(self, condition: Callable[[], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not condition() and time.monotonic() < deadline:
            self.play(np.zeros(int(0.5 * RATE), np.float32))


def replies_per_wake(device: Device, wakes: list[Wake]) -> dict[int, str]:
    """Wake index -> this device's outcome for it (its turns placed by their wake time
    on its own stream clock)."""
    outcomes: dict[int, str] = {}
    starts = [w.start_sample / RATE * 1000 for w in wakes]
    for turn in device.turns():
        wake_ms = turn.get("wake_ms")
        if not isinstance(wake_ms, int | float):
            continue
        index = max((i for i, s in enumerate(starts) if s <= wake_ms), default=None)
        if index is not None and wake_ms - starts[index] < 3000:
            outcomes[index] = str(turn["outcome"])
    return outcomes


def test_three_rooms_one_reply_per_wake_from_the_loudest(
    tts: PiperTts, models_dir: Path, tmp_path: Path
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    devices = [spawn(tmp_path, name, broker.port, models_dir) for name in DEVICES]
    try:
        _run_session(tts, broker, devices, tmp_path)
    finally:
        for device in devices:
            if device.process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    device.process.stdin.close()
        for device in devices:
            try:
                device.process.wait(60)
            except subprocess.TimeoutExpired:
                device.process.kill()
        broker.kill()


def _run_session(tts: PiperTts, broker: Broker, devices: list[Device], folder: Path) -> None:
    turn = as_float(compose(tts, [0.8, "Hey Jarvis.", 0.3, "What time is it?", 3.4]))
    room = Room(devices)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(d.ready() for d in devices):  # each is ready once it read audio
        assert all(d.process.poll() is None for d in devices), _logs(devices)
        assert time.monotonic() < deadline, _logs(devices)
        room.play(np.zeros(int(0.1 * RATE), np.float32))
    wakes: list[Wake] = []

    def say(phase: str, count: int) -> None:
        for _ in range(count):
            wakes.append(Wake(phase, devices[0].written_samples))
            room.play(turn)
        # Before the room changes (a mute, the broker), every turn has ended: a busy
        # machine may run a little behind the room.
        room.silence_until(lambda: all(len(d.turns()) >= len(wakes) for d in devices
                                       if d.name not in muted), 20.0)  # fmt: skip

    muted: set[str] = set()

    say("together", 12)
    publish(broker.port, "voiced/kitchen/mute", "ON")
    muted.add("kitchen")
    room.play(np.zeros(RATE, np.float32))
    say("kitchen muted", 4)
    publish(broker.port, "voiced/kitchen/mute", "OFF")
    muted.clear()
    reconnected = all_reconnected(devices)
    broker.kill()
    room.play(np.zeros(RATE, np.float32))
    say("broker down", 2)
    broker.start()
    room.silence_until(reconnected, 60.0)
    assert reconnected(), _logs(devices)
    room.play(np.zeros(RATE, np.float32))
    say("broker back", 4)
    room.play(np.zeros(3 * RATE, np.float32))
    time.sleep(1.0)

    outcomes = [replies_per_wake(d, wakes) for d in devices]
    table = []
    for index, wake in enumerate(wakes):
        answered = [d.name for d, o in zip(devices, outcomes, strict=True)
                    if o.get(index) == "answered"]  # fmt: skip
        table.append((wake.phase, answered))
    report = _report(table, devices, wakes)
    (folder / "house-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(_logs(devices, lines=0))

    expected = {"together": ["kitchen"], "kitchen muted": ["hall"], "broker back": ["kitchen"]}
    for phase, answered in table:
        if phase == "broker down":
            assert answered, f"a wake was lost while the broker was down: {table}"
        else:
            assert answered == expected[phase], (phase, table)
    assert sum(1 for phase, _ in table if phase != "broker down") >= 20


def _report(table: list[tuple[str, list[str]]], devices: list[Device],
            wakes: list[Wake]) -> dict[str, object]:  # fmt: skip
    arbitrated = [(p, a) for p, a in table if p != "broker down"]
    expected = {"together": "kitchen", "kitchen muted": "hall", "broker back": "kitchen"}
    kitchen = devices[0].turns()
    latency = {"with others": [], "alone (broker down)": []}
    for turn in kitchen:
        if turn.get("outcome") != "answered" or turn.get("first_audio_ms") is None:
            continue
        wake_ms = float(turn["wake_ms"])  # type: ignore[arg-type]
        phase = next((w.phase for w in reversed(wakes)
                      if w.start_sample / RATE * 1000 <= wake_ms), None)  # fmt: skip
        key = "alone (broker down)" if phase == "broker down" else "with others"
        latency[key].append(float(turn["first_audio_ms"]) - float(turn["speech_end_ms"]))  # type: ignore[arg-type]
    waited = [float(line.rsplit("waited ", 1)[1].split(" ms")[0])
              for line in devices[0].log.read_text().splitlines()
              if "answering (loudest" in line and "waited " in line]  # fmt: skip
    return {
        "wakes": len(table),
        "arbitrated_wakes": len(arbitrated),
        "replies": sum(len(a) for _, a in arbitrated),
        "wrong_room_replies": sum(1 for p, a in arbitrated if a and a != [expected[p]]),
        "double_replies": sum(1 for _, a in arbitrated if len(a) > 1),
        "unanswered": sum(1 for _, a in arbitrated if not a),
        "while_broker_down": [a for p, a in table if p == "broker down"],
        "kitchen_speech_end_to_first_audio_ms": {
            k: round(statistics.median(v)) if v else None for k, v in latency.items()},
        "kitchen_wait_for_the_verdict_ms": {
            "median": statistics.median(waited) if waited else None,
            "max": max(waited, default=None), "turns": len(waited)},
    }  # fmt: skip


def _logs(devices: list[Device], lines: int = 30) -> str:
    out = []
    for device in devices:
        text = device.log.read_text(errors="replace").splitlines()
        keep = [t for t in text if "wake " in t and ("answering" in t or "answers" in t)]
        out.append(f"--- {device.name}\n" + "\n".join(keep + (text[-lines:] if lines else [])))
    return "\n".join(out)


class Forger:
    """Not a voiced device: answers every claim it sees with a louder forged one, and
    when told, floods the house topic with claims from made-up devices."""

    def __init__(self, port: int) -> None:
        from paho.mqtt import client as mqtt

        self.flood = False
        self.forged = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("voiced/house/claim")
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: object) -> None:
        claim = json.loads(message.payload)  # type: ignore[attr-defined]
        if not claim["device_id"].startswith(("intruder", "flood")):
            names = [f"flood-{self.forged}-{n}" for n in range(30)] if self.flood else ["intruder"]
            for name in names:
                forged = {**claim, "device_id": name, "wake_id": f"{name}-{self.forged}",
                          "level_db": 99.0}  # fmt: skip
                self.client.publish("voiced/house/claim", json.dumps(forged))
            self.forged += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_forged_and_flooded_claims_do_not_keep_the_house_deaf(
    tts: PiperTts, models_dir: Path, tmp_path: Path
) -> None:
    """A forged louder claim costs one wake (the forger never says it took it, so it
    is ignored after that); a flood of claims from made-up devices costs none."""
    broker = Broker(tmp_path)
    broker.start()
    device = spawn(tmp_path, "kitchen", broker.port, models_dir)
    forger = Forger(broker.port)
    try:
        room = Room([device])
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not device.ready():
            assert device.process.poll() is None and time.monotonic() < deadline, _logs([device])
            room.play(np.zeros(int(0.1 * RATE), np.float32))
        turn = as_float(compose(tts, [0.8, "Hey Jarvis.", 0.3, "What time is it?", 3.4]))
        wakes: list[Wake] = []
        for phase in ("forged", "forged", "flood", "flood"):
            forger.flood = phase == "flood"
            wakes.append(Wake(phase, device.written_samples))
            room.play(turn)
        room.play(np.zeros(2 * RATE, np.float32))
        time.sleep(1.0)
        outcomes = replies_per_wake(device, wakes)
        assert [outcomes.get(i) for i in range(4)] == [
            "answered_elsewhere", "answered", "answered", "answered"], _logs([device])  # fmt: skip
        assert forger.forged == 4, "the forger saw every claim"
    finally:
        forger.close()
        if device.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                device.process.stdin.close()
        try:
            device.process.wait(60)
        except subprocess.TimeoutExpired:
            device.process.kill()
        broker.kill()
