""""Tell the kitchen dinner is ready": a spoken announcement for another room, or
for every room, sent over the house topics (voiced/room/<area>/say, voiced/house/say).

Only rooms named in ``[house] rooms`` are matched, so "tell me a joke" or "tell the
truth" still go to the language model. The devices that should speak must allow
``say`` in their ``[mqtt] commands``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from voiced.house.arbiter import HouseTopics
from voiced.intents.base import IntentMatch, WorldView
from voiced.user_tables import Publisher

_LOGGER = logging.getLogger(__name__)
EVERYONE = ("everyone", "everybody", "the house", "all rooms", "every room")
MAX_MESSAGE_CHARS = 300


class RoomAnnouncements:
    """An intent handler: pure matching; the publish happens once, after commit."""

    def __init__(self, rooms: tuple[str, ...], publisher: Publisher) -> None:
        self.publisher = publisher
        self._rooms = {area.replace("_", " ").replace("-", " "): area for area in rooms}
        names = sorted([*self._rooms, *EVERYONE], key=len, reverse=True)
        alternatives = "|".join(re.escape(name) for name in names)
        self._pattern = re.compile(
            rf"^(?:tell|announce to|announce in|say to|say in) (?:the )?(?P<room>{alternatives})"
            r"(?: that)? (?P<message>.+)$"
        )

    def match(self, normalized: str, view: WorldView) -> IntentMatch | None:
        found = self._pattern.match(normalized)
        if found is None:
            return None
        room, message = found["room"], found["message"][:MAX_MESSAGE_CHARS]
        spoken = message[0].upper() + message[1:] + "."
        if room in EVERYONE:
            topic, who = HouseTopics().say, "everyone"
        else:
            topic, who = HouseTopics.room_say(self._rooms[room]), f"the {room}"
        return IntentMatch(
            "room_announcement", f"Telling {who}.", {"room": room, "message": message},
            action=self._send(topic, spoken),
        )  # fmt: skip

    def _send(self, topic: str, text: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def send() -> None:
            if not self.publisher.publish(topic, text, qos=1):
                _LOGGER.warning("the announcement for %s was not sent: MQTT is away", topic)

        return send
