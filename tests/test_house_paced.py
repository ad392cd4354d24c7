"""Wake-word arbitration in one assistant, paced (tests/paced.py): the other
devices' claims are injected as the broker would deliver them. Counts, not
presence: one wake, one answer, from one device. The real thing, three daemons
on one mosquitto, is tests/test_house.py."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.paced import Script, paced_settings, run_paced
from voiced.house.arbiter import HouseArbiter
from voiced.house.claims import decode_claim, decode_result
from voiced.pipeline.assistant import Assistant
from voiced.pipeline.events import EventType
from voiced.settings import HouseSettings

Sent = list[tuple[str, str, int]]


class House:
    """This device's arbiter and what it sent; ``connected`` can be switched off."""

    def __init__(self, device_id: str = "kitchen", **settings: object) -> None:
        self.device_id = device_id
        self.settings = HouseSettings(**settings)  # type: ignore[arg-type]
        self.sent: Sent = []
        self.connected = True
        self.arbiter: HouseArbiter | None = None
        self.clock: Callable[[], float] = lambda: 0.0

    def __call__(self, wall_clock: Callable[[], float]) -> HouseArbiter:
        self.clock = wall_clock
        self.arbiter = HouseArbiter(
            self.device_id, self.settings, lambda *m: self.sent.append(m),
            lambda: self.connected, phrase="hey_jarvis", wall_clock=wall_clock,
        )  # fmt: skip
        return self.arbiter

    def rival(self, device_id: str, level_db: float, *, phrase: str = "hey_jarvis",
              wake_id: str | None = None) -> Callable[[Assistant], None]:  # fmt: skip
        """A step: another device's claim arrives, heard now."""

        def deliver(_assistant: Assistant) -> None:
            assert self.arbiter is not None
            body = {"device_id": device_id, "wake_id": wake_id or f"{device_id}-1",
                    "phrase": phrase, "heard_at_s": self.clock(), "level_db": level_db}  # fmt: skip
            assert self.arbiter.on_message("voiced/house/claim", json.dumps(body).encode())

        return deliver

    def result_from(
        self, device_id: str, wake_id: str, outcome: str = "answering"
    ) -> Callable[[Assistant], None]:
        def deliver(_assistant: Assistant) -> None:
            assert self.arbiter is not None
            body = {"device_id": device_id, "wake_id": wake_id, "outcome": outcome,
                    "at_s": self.clock()}  # fmt: skip
            assert self.arbiter.on_message("voiced/house/result", json.dumps(body).encode())

        return deliver

    def claims(self) -> list[str]:
        return [payload for topic, payload, _ in self.sent if topic == "voiced/house/claim"]

    def results(self) -> list[str]:
        found = [decode_result(p.encode(), self.clock()) for t, p, _ in self.sent
                 if t == "voiced/house/result"]  # fmt: skip
        return [r.outcome for r in found if not isinstance(r, str)]


def question(house: House, *steps: Callable[[Assistant], None]) -> Script:
    """Wake word, the other devices' claims (during the wait), then the question."""
    script = Script().silence(300).wake()
    for step in steps:
        script.do(step)
    return script.silence(100).say("What time is it?").silence(2000)


def answered(run: object) -> list[str]:
    return [t.outcome for t in run.voice_turns()]  # type: ignore[attr-defined]


def test_alone_it_answers_and_says_it_took_the_wake() -> None:
    house = House()
    run = run_paced(question(house), wake_mode=True, house=house)
    assert answered(run) == ["answered"]
    assert len(house.claims()) == 1
    claim = decode_claim(house.claims()[0].encode(), house.clock())
    assert not isinstance(claim, str) and claim.device_id == "kitchen"
    assert house.results() == ["taken", "answering", "answered"]


def test_a_louder_device_answers_and_this_one_drops_the_turn_silently() -> None:
    house = House()
    run = run_paced(question(house, house.rival("hall", 12.0)), wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"]
    elsewhere = run.of(EventType.ANSWERED_ELSEWHERE)
    assert len(elsewhere) == 1 and elsewhere[0].data["winner"] == "hall"
    assert run.asr.calls == [] and run.tts.texts == [], "nothing transcribed, nothing said"
    assert house.results() == []


def test_a_louder_device_that_hears_the_word_later_still_wins() -> None:
    """Detection times differ by hundreds of ms between devices: a louder claim
    counts until this device answers, not only during its first wait."""
    house = House(window_ms=200)
    script = Script().silence(300).wake().silence(100).say("What time is it?", ms=300)
    script.do(house.rival("hall", 12.0)).silence(2000)  # 400 ms after the wake word
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"]
    assert house.results() == ["taken"], "it was in the running until the louder claim"


def test_a_quieter_device_loses_to_this_one() -> None:
    house = House()
    # This device's own level is 0 dB in the scripted listener: a rival at 0 dB ties,
    # and the lower device id wins the tie.
    run = run_paced(question(house, house.rival("zz-hall", 0.0)), wake_mode=True, house=house)
    assert answered(run) == ["answered"]
    run = run_paced(question(house, house.rival("aa-hall", 0.0)), wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"]


def test_claims_for_another_wake_word_do_not_compete() -> None:
    house = House()
    rival = house.rival("hall", 30.0, phrase="okay_nabu")
    run = run_paced(question(house, rival), wake_mode=True, house=house)
    assert answered(run) == ["answered"]


def test_without_the_broker_it_answers_at_once_and_sends_nothing() -> None:
    house = House()
    house.connected = False
    run = run_paced(question(house), wake_mode=True, house=house)
    assert answered(run) == ["answered"]
    assert house.sent == []


def test_a_run_waits_for_the_verdict_when_the_speech_ends_first() -> None:
    """A wait longer than the question: the committed run holds until it is decided."""
    house = House(window_ms=1500)
    script = Script().silence(300).wake().silence(100).say("Stop.", ms=300).silence(450)
    script.do(house.rival("hall", 12.0)).silence(2000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"]
    assert run.asr.calls, "the utterance ended and was transcribed before the verdict"
    assert run.tts.texts == []


def test_a_winner_that_never_answers_is_ignored_for_a_while() -> None:
    """A client forging loud claims (or a device that crashed after winning) costs
    one wake: with no result from it, its later claims are ignored."""
    house = House(result_timeout_s=3.0, distrust_s=600.0)
    script = question(house, house.rival("forger", 90.0, wake_id="f-1"))
    script.silence(4000)
    for n in range(2, 5):
        script.wake().do(house.rival("forger", 90.0, wake_id=f"f-{n}"))
        script.silence(100).say("What time is it?").silence(3000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere", "answered", "answered", "answered"]
    assert house.arbiter is not None and house.arbiter.book.distrusted() == ["forger"]


def test_a_winner_that_reports_keeps_winning() -> None:
    house = House(result_timeout_s=3.0)
    script = Script()
    for n in range(3):
        script.silence(300).wake().do(house.rival("hall", 12.0, wake_id=f"h-{n}"))
        script.do(house.result_from("hall", f"h-{n}"))
        script.silence(100).say("What time is it?").silence(4000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"] * 3


def test_a_flood_of_claims_is_ignored_and_this_device_answers() -> None:
    house = House()
    flood = [house.rival(f"fake-{n}", 50.0) for n in range(20)]
    run = run_paced(question(house, *flood), wake_mode=True, house=house)
    assert answered(run) == ["answered"]


def test_only_the_listed_devices_count() -> None:
    house = House(devices=("hall", "living"))
    run = run_paced(question(house, house.rival("intruder", 40.0)), wake_mode=True, house=house)
    assert answered(run) == ["answered"]


def test_hostile_house_messages_are_refused() -> None:
    house = House()
    run_paced(Script().silence(100), wake_mode=True, house=house)
    arbiter = house.arbiter
    assert arbiter is not None
    now = house.clock()
    good = {"device_id": "hall", "wake_id": "h-1", "phrase": "hey_jarvis",
            "heard_at_s": now, "level_db": 10.0}  # fmt: skip
    bad = [
        b"",
        b"\xff\xfe",
        b"[]",
        b"{" * 600,
        json.dumps({**good, "extra": 1}).encode(),
        json.dumps({**good, "level_db": 1e9}).encode(),
        json.dumps({**good, "level_db": float("nan")}).encode(),
        json.dumps({**good, "level_db": True}).encode(),
        json.dumps({**good, "heard_at_s": now + 3600}).encode(),
        json.dumps({**good, "device_id": "voiced/+/#"}).encode(),
        json.dumps({**good, "phrase": "x" * 100}).encode(),
        json.dumps({**good, "wake_id": ""}).encode(),
    ]
    for payload in bad:
        assert isinstance(decode_claim(payload, now), str), payload[:60]
        assert arbiter.on_message("voiced/house/claim", payload)
    assert not isinstance(decode_claim(json.dumps(good).encode(), now), str)
    assert not arbiter.on_message("voiced/kitchen/say", b"hello"), "not a house topic"


def test_house_settings_are_checked() -> None:
    from voiced.errors import ConfigError
    from voiced.settings import parse_settings

    for toml, says in [
        ('[house]\narea = "living room"', "`house.area` 'living room' must be"),
        ('[house]\ndevices = ["hall", "a/b"]', "`house.devices` 'a/b' must be"),
        ('[house]\nrooms = ["living room"]', "`house.rooms` 'living room' must be"),
        ("[house]\nwindow_ms = 5000", "`house.window_ms` must be between 0 and 2000"),
        ("[house]\nresult_timeout_s = 0", "`house.result_timeout_s` must be between 0.5"),
    ]:
        try:
            parse_settings(toml, source="voiced.toml")
        except ConfigError as err:
            assert says in err.render(), (toml, err.render())
        else:
            raise AssertionError(toml)
    assert paced_settings().house.arbitrate is True


def test_a_wake_another_device_already_took_is_left_to_it_however_loud() -> None:
    """Heard later than the others' wait: the device that answers already keeps it."""
    house = House()
    # 0 dB ties with this device's own level, and "zz-hall" would lose the tie.
    steps = (house.rival("zz-hall", 0.0, wake_id="h-1"), house.result_from("zz-hall", "h-1"))
    run = run_paced(question(house, *steps), wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere"]
    assert run.of(EventType.ANSWERED_ELSEWHERE)[0].data["winner"] == "zz-hall"


class Published:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1,
                retain: bool = False) -> bool:  # fmt: skip
        self.sent.append((topic, str(payload)))
        return True


def test_tell_another_room_sends_one_announcement_there() -> None:
    from voiced.house.room_intent import RoomAnnouncements

    published = Published()
    rooms = RoomAnnouncements(("kitchen", "living_room"), published)
    script = Script().silence(300).say("Tell the kitchen dinner is ready.").silence(1500)
    script.say("Tell everyone that the film starts.").silence(1500)
    script.say("Announce in the living room time for bed.").silence(1500)
    script.say("Tell the garage to open.").silence(1500)
    run = run_paced(script, intents=[rooms])
    replies = [t.reply for t in run.voice_turns()]
    assert replies[:3] == ["Telling the kitchen.", "Telling everyone.", "Telling the living room."]
    assert run.voice_turns()[3].intent != "room_announcement", "no garage in [house] rooms"
    assert published.sent == [
        ("voiced/room/kitchen/say", "Dinner is ready."),
        ("voiced/house/say", "The film starts."),
        ("voiced/room/living_room/say", "Time for bed."),
    ], "each spoken once, though the speculative turn matched it more often"


def test_tell_me_a_joke_is_not_a_room() -> None:
    from voiced.house.room_intent import RoomAnnouncements

    rooms = RoomAnnouncements(("kitchen",), Published())
    for text in ("tell me a joke", "tell the truth", "tell kitchen", "say hello"):
        assert rooms.match(text, None) is None, text  # type: ignore[arg-type]


def test_a_forger_that_changes_its_device_id_each_wake_costs_one_wake() -> None:
    """Distrust by device id alone is no defence when the id is made up each time: once a
    winner never answered, claims from devices that never sent a result are ignored."""
    house = House(result_timeout_s=3.0, distrust_s=600.0)
    script = question(house, house.rival("forger-1", 90.0, wake_id="f-1"))
    script.silence(4000)
    for n in range(2, 5):
        script.wake().do(house.rival(f"forger-{n}", 90.0, wake_id=f"f-{n}"))
        script.silence(100).say("What time is it?").silence(4000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered_elsewhere", "answered", "answered", "answered"]


def test_a_device_that_reports_still_wins_after_a_forger_was_caught() -> None:
    """Wary of unknown devices after a forger, a real device that says it took its wakes
    still wins the wakes it heard louder."""
    house = House(result_timeout_s=3.0, distrust_s=600.0)
    script = Script().silence(300).wake().do(house.result_from("hall", "h-0", "taken"))
    script.silence(100).say("What time is it?").silence(3000)
    script.wake().do(house.rival("forger-1", 90.0, wake_id="f-1"))
    script.silence(100).say("What time is it?").silence(4000)
    script.wake().do(house.rival("hall", 12.0, wake_id="h-1"))
    script.do(house.result_from("hall", "h-1"))
    script.silence(100).say("What time is it?").silence(3000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered", "answered_elsewhere", "answered_elsewhere"]


def test_a_flood_does_not_make_this_device_answer_a_wake_a_reporting_device_won() -> None:
    """A flood of made-up devices made every device answer (two replies); the devices
    that have sent results still count, so the louder real one keeps the wake."""
    house = House()
    script = Script().silence(300).wake().do(house.result_from("hall", "h-0", "taken"))
    script.silence(100).say("What time is it?").silence(3000)
    script.wake().do(house.rival("hall", 12.0, wake_id="h-1"))
    for n in range(20):
        script.do(house.rival(f"fake-{n}", 50.0, wake_id=f"x-{n}"))
    script.do(house.result_from("hall", "h-1"))
    script.silence(100).say("What time is it?").silence(3000)
    run = run_paced(script, wake_mode=True, house=house)
    assert answered(run) == ["answered", "answered_elsewhere"]
