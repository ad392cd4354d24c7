"""User intents from [[intent]] tables: forgiving matching, actions, config errors."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from voiced.control.config_check import check_config
from voiced.errors import ConfigError
from voiced.intents import user
from voiced.intents.base import IntentMatch
from voiced.intents.normalize import normalize
from voiced.intents.user import UserIntent, load_user_intents

TIMEOUT_S = 20.0
EXAMPLE = """
[[intent]]
name = "light_on"
sentences = ["turn on the {area} lights", "switch on the {area} light"]
reply = "Turning on the {area} lights."
mqtt = { topic = "home/{area}/light/set", payload = "ON" }

[[intent]]
name = "garage"
sentences = ["open the garage door"]
reply = "Opening the garage."
http = { url = "http://127.0.0.1:8123/api/webhook/garage", method = "POST", json = { action = "open" } }
"""  # noqa: E501


class Recorder:
    def __init__(self, accept: bool = True) -> None:
        self.sent: list[tuple[str, str | bytes, int, bool]] = []
        self.accept = accept

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> bool:
        self.sent.append((topic, payload, qos, retain))
        return self.accept


def example(publisher: Recorder | None = None) -> list[UserIntent]:
    return load_user_intents(tomllib.loads(EXAMPLE)["intent"], publisher=publisher)


def match(intents: list[UserIntent], text: str) -> IntentMatch | None:
    for intent in intents:
        found = intent.match(normalize(text), None)  # type: ignore[arg-type]
        if found is not None:
            return found
    return None


@pytest.mark.parametrize(
    ("heard", "area"),
    [
        ("Turn on the kitchen lights.", "kitchen"),
        ("turn on kitchen lights please", "kitchen"),
        ("Switch on the living room light", "living room"),
        ("Um, switch on the the Living-Room light!", "living room"),
        ("turn on a bedroom lights", "bedroom"),
        ("TURN ON THE LORD OF THE RINGS LIGHTS", "lord of the rings"),
    ],
)
def test_forgiving_matches(heard: str, area: str) -> None:
    found = match(example(), heard)
    assert found is not None and found.intent == "light_on"
    assert found.slots == {"area": area}
    assert found.reply == f"Turning on the {area} lights."


@pytest.mark.parametrize(
    "heard",
    [
        "turn on the lights",
        "turn off the kitchen lights",
        "please",
        "",
        "open the garage",
        "turn on the kitchen lights now",
        "what time is it",
    ],
)
def test_no_match_is_none(heard: str) -> None:
    assert match(example(), heard) is None


def test_number_words_and_digits_match_both_ways() -> None:
    intents = load_user_intents(
        [
            {"name": "fan", "sentences": ["set the fan to speed two"], "reply": "Fan at 2."},
            {"name": "scene", "sentences": ["scene {number}"], "reply": "Scene {number}."},
        ]
    )
    for heard in ("Set the fan to speed 2.", "set fan to speed two", "set the fan to speed Two"):
        assert (found := match(intents, heard)) is not None and found.intent == "fan"
    found = match(intents, "scene twenty one")
    assert found is not None and found.slots == {"number": "21"} and found.reply == "Scene 21."


def test_restricted_slots_give_the_configured_value() -> None:
    (intent,) = load_user_intents(
        [
            {
                "name": "go",
                "sentences": ["vacuum the {room}"],
                "reply": "Vacuuming the {room}.",
                "slots": {"room": ["Kitchen", "the Living Room"]},
            }
        ]
    )
    assert (found := match([intent], "vacuum living room")) is not None
    assert found.slots == {"room": "the Living Room"}
    assert match([intent], "vacuum the garage") is None


def test_slot_values_cannot_inject_formats_topics_or_urls() -> None:
    sent = Recorder()
    intents = example(sent)
    hostile = "kitchen {area.__class__} # + /x"
    found = match(intents, f"turn on the {hostile} lights")
    assert found is not None and found.action is not None
    assert found.reply == "Turning on the kitchen area class x lights."  # normalized text only
    asyncio.run(asyncio.wait_for(found.action(), TIMEOUT_S))
    (topic, payload, qos, retain) = sent.sent[0]
    assert topic == "home/kitchen_area_class_x/light/set"
    assert (payload, qos, retain) == ("ON", 1, False)


def test_mqtt_action_without_a_connection_warns(caplog: pytest.LogCaptureFixture) -> None:
    found = match(example(Recorder(accept=False)), "turn on the kitchen lights")
    assert found is not None and found.action is not None
    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(found.action(), TIMEOUT_S))
    assert "dropped" in caplog.text
    found = match(example(None), "turn on the kitchen lights")
    assert found is not None and found.action is not None
    asyncio.run(asyncio.wait_for(found.action(), TIMEOUT_S))


def test_http_action_calls_a_real_server(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(user, "HTTP_TIMEOUT_S", 0.5)

    async def hook(request: web.Request) -> web.Response:
        received.append((request.method, request.path, await request.json()))
        return web.json_response({}, status=200 if request.path.endswith("ok") else 500)

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{name}", hook)
        app.router.add_get("/hang", hang)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        tables = [
            {
                "name": "door",
                "sentences": ["open the {door} door"],
                "reply": "Opening.",
                "http": {
                    "url": f"http://127.0.0.1:{port}/api/{{door}}-ok",
                    "method": "put",
                    "json": {"action": "open", "which": ["{door}"], "n": 1},
                },
            },
            {
                "name": "fail",
                "sentences": ["fail"],
                "http": {"url": f"http://127.0.0.1:{port}/api/x"},
            },
            {
                "name": "hang",
                "sentences": ["hang"],
                "http": {"url": f"http://127.0.0.1:{port}/hang", "method": "GET"},
            },
            {"name": "down", "sentences": ["down"], "http": {"url": "http://127.0.0.1:1/nothing"}},
        ]
        intents = load_user_intents(tables)
        for heard in ("open the front yard door", "fail", "hang", "down"):
            found = match(intents, heard)
            assert found is not None and found.action is not None
            await found.action()  # logs, never raises
        await runner.cleanup()

    with caplog.at_level(logging.WARNING, logger="voiced.intents.user"):
        asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))
    assert received[0] == (
        "PUT",
        "/api/front yard-ok",
        {"action": "open", "which": ["front yard"], "n": 1},
    )
    assert "HTTP 500" in caplog.text and "timed out" in caplog.text and "down" in caplog.text


def test_the_example_config_loads() -> None:
    light, garage = example()
    assert light.mqtt is not None and light.mqtt.topic == "home/{area}/light/set"
    assert garage.http is not None and garage.http.json_body == {"action": "open"}
    found = match([garage], "Open the garage door.")
    assert found is not None and found.reply == "Opening the garage." and found.slots == {}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"sentences": ["x"]}, "`name`"),
        ({"name": "bad name", "sentences": ["x"]}, "`name`"),
        ({"name": "a"}, "`sentences`"),
        ({"name": "a", "sentences": []}, "`sentences`"),
        ({"name": "a", "sentences": ["{only}"]}, "`sentences`"),
        ({"name": "a", "sentences": ["x {a} {a}"]}, "`sentences`"),
        ({"name": "a", "sentences": ["x {a:>9}"]}, "`sentences`"),
        ({"name": "a", "sentences": ["x"], "reply": 5}, "`reply`"),
        ({"name": "a", "sentences": ["x {b}", "y"], "reply": "{b}"}, "`reply`"),
        ({"name": "a", "sentences": ["x"], "reply": "{nope}"}, "`reply`"),
        ({"name": "a", "sentences": ["x"], "slots": {"s": []}}, "`slots.s`"),
        ({"name": "a", "sentences": ["x"], "mqtt": {"payload": "ON"}}, "`mqtt.topic`"),
        ({"name": "a", "sentences": ["x"], "mqtt": {"topic": "a/#"}}, "`mqtt.topic`"),
        ({"name": "a", "sentences": ["x"], "mqtt": {"topic": "a/{zone}"}}, "`mqtt.topic`"),
        ({"name": "a", "sentences": ["x"], "mqtt": {"topic": "a", "qos": 3}}, "`mqtt.qos`"),
        ({"name": "a", "sentences": ["x"], "mqtt": {"topic": "a", "colour": 1}}, "`mqtt.colour`"),
        ({"name": "a", "sentences": ["x"], "http": {"url": "ftp://x"}}, "`http.url`"),
        (
            {"name": "a", "sentences": ["x"], "http": {"url": "http://x", "method": "BREW"}},
            "`http.method`",
        ),
        ({"name": "a", "sentences": ["x"], "http": {"url": "http://x/{s}"}}, "`http.url`"),
        (
            {"name": "a", "sentences": ["x"], "http": {"url": "http://x", "json": {"a": "{s}"}}},
            "`http.json`",
        ),
        (
            {"name": "a", "sentences": ["x"], "mqtt": {"topic": "a"}, "http": {"url": "http://x"}},
            "`http`",
        ),
        ({"name": "a", "sentences": ["x"], "speech": "hi"}, "`speech`"),
        ({"name": "light_on", "sentences": ["x"]}, "`name`"),
    ],
)
def test_config_errors_name_the_intent_and_key(table: dict[str, Any], key: str) -> None:
    tables = [*tomllib.loads(EXAMPLE)["intent"], table]
    with pytest.raises(ConfigError) as caught:
        load_user_intents(tables)
    assert caught.value.message.startswith("intent #3"), caught.value.message
    assert key in caught.value.message


def test_adversarial_text_matches_quickly() -> None:
    (intent,) = load_user_intents([{"name": "a", "sentences": ["set {a} to {b} and {c} now"]}])
    for text in (
        "set " + "a " * 60 + "to " + "a " * 60 + "and " + "a " * 60,
        "set " + "to and " * 60,
        "set " + "x to " * 40 + "now",
        "x " * 5000,
    ):
        assert intent.match(normalize(text), None) is None  # type: ignore[arg-type]


def test_config_check_lists_every_broken_table_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text(
        EXAMPLE
        + '\n[[intent]]\nname = "fan"\nsentences = ["fan on"]\nmqtt = { topic = "a/#" }\n'
        + '\n[[hook]]\non = "transcript"\ncommand = ["logger", "{text}"]\n'
        + '\n[[hook]]\non = "transcript"\ntimeout_s = -1\ncommand = ["true"]\n'
        + '\n[http]\nlisten = "0.0.0.0:8765"\n'
    )
    problems = check_config(config)
    assert len(problems) == 4, problems
    assert "line 6: intent #1 ('light_on'): `mqtt` needs a broker" in problems.pop(0)
    assert problems[0].startswith(
        f"error[config]: {config}, line 17: intent #3 ('fan'): `mqtt.topic`"
    )
    assert problems[1].startswith(f"error[config]: {config}, line 25: hook #2: `timeout_s`")
    assert f"{config}, line 29" in problems[2] and "without a token" in problems[2]
    good = tmp_path / "good.toml"
    good.write_text(
        EXAMPLE
        + '\n[mqtt]\nhost = "broker"\n'
        + '\n[[hook]]\non = "wake"\nwebhook = { url = "http://127.0.0.1/x" }\n'
    )
    assert check_config(good) == []
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = 1\n")
    (problem,) = check_config(bad)
    assert "line 2" in problem and "http.port" in problem
