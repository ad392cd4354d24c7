"""User intents from the ``[[intent]]`` tables of the config file.

    [[intent]]
    name = "light_on"
    sentences = ["turn on the {area} lights", "switch on the {area} light"]
    slots = { area = ["kitchen", "living room"] }   # optional: allowed values
    reply = "Turning on the {area} lights."
    mqtt = { topic = "home/{area}/light/set", payload = "ON" }
    # or: http = { url = "http://...", method = "POST", json = { action = "open" } }

Matching is forgiving of ASR output: both sides are normalize()d (case,
punctuation, fillers such as a trailing "please", number words as digits), and
"the", "a" and "an" may be dropped or added anywhere: they are taken out of
both sides before matching (and put back inside a captured value), which also
keeps the match free of ambiguous backtracking. ``{slot}`` captures one to
eight words; a sentence has at most four. Slot values fill ``{slot}`` in the
reply, the MQTT topic and payload, and the URL and JSON strings of the HTTP
call: only plain ``{name}`` placeholders of known slots, never ``str.format``.
In a topic, spaces in a value become ``_``; in a URL, values are percent-encoded.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voiced.credentials import read_secret
from voiced.errors import ConfigError
from voiced.intents.base import AssistantControls, IntentMatch
from voiced.intents.normalize import normalize
from voiced.intents.template import fill, fill_json, json_strings, placeholders
from voiced.user_tables import Publisher, TableError, topic_value

__all__ = ["Publisher", "TableError", "UserIntent", "load_user_intents", "topic_value"]
_LOGGER = logging.getLogger(__name__)
HTTP_TIMEOUT_S = 5.0
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ARTICLES = frozenset({"the", "a", "an"})
_SLOT_WORDS = r"[^ ]+(?: [^ ]+){0,7}?"
"""A free slot: one to eight words (bounded, so matching stays linear)."""
MAX_SLOTS = 4
MAX_MATCH_CHARS = 400
"""Longer text is no command: skip matching (and any regex blow-up) at once."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPLIT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
INTENT_KEYS = frozenset({"name", "sentences", "slots", "reply", "mqtt", "http"})
MQTT_KEYS = frozenset({"topic", "payload", "qos", "retain"})
HTTP_KEYS = frozenset({"url", "method", "json", "headers"})


@dataclass(frozen=True, slots=True)
class MqttAction:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class HttpAction:
    url: str
    method: str = "POST"
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sentence:
    template: str
    pattern: re.Pattern[str]
    slots: tuple[str, ...]


def _url_value(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _content_words(text: str) -> list[str]:
    """normalize()d words without articles: the form both sides are matched in."""
    return [word for word in normalize(text).split() if word not in ARTICLES]


class UserIntent:
    """One ``[[intent]]`` table, compiled; an IntentHandler."""

    def __init__(
        self, name: str, sentences: Sequence[Sentence], reply: str,
        allowed: Mapping[str, Mapping[str, str]], mqtt: MqttAction | None = None,
        http: HttpAction | None = None, publisher: Publisher | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.sentences = tuple(sentences)
        self.reply = reply
        self.allowed = allowed
        """slot -> normalized value -> the value as configured."""
        self.mqtt = mqtt
        self.http = http
        self.publisher = publisher

    def example_commands(self) -> tuple[str, ...]:
        """The first sentence, slots shown as [name]: how the language model is told of it."""
        first = self.sentences[0].template if self.sentences else self.name
        return (re.sub(r"\{(\w+)\}", r"[\1]", first),)

    def match(self, normalized: str, controls: AssistantControls) -> IntentMatch | None:
        if len(normalized) > MAX_MATCH_CHARS:
            return None
        words = normalized.split()
        kept = [index for index, word in enumerate(words) if word not in ARTICLES]
        text = " ".join(words[index] for index in kept)
        for sentence in self.sentences:
            found = sentence.pattern.match(text)
            if found is None:
                continue
            slots = self._slot_values(found, words, kept)
            if slots is None:
                continue
            return IntentMatch(self.name, fill(self.reply, slots), slots, self._action(slots))
        return None

    def _slot_values(
        self, found: re.Match[str], words: list[str], kept: list[int]
    ) -> dict[str, str] | None:
        """Slot values, with the articles inside them put back ("lord of the rings")."""
        slots: dict[str, str] = {}
        for slot, value in found.groupdict().items():
            allowed = self.allowed.get(slot)
            if allowed is not None:
                if value not in allowed:
                    return None
                slots[slot] = allowed[value]
                continue
            first = found.string.count(" ", 0, found.start(slot))
            last = first + value.count(" ")
            slots[slot] = " ".join(words[kept[first] : kept[last] + 1])
        return slots

    def _action(self, slots: dict[str, str]) -> Callable[[], Coroutine[Any, Any, None]] | None:
        if self.mqtt is not None:
            mqtt = self.mqtt

            async def publish() -> None:
                self._publish(mqtt, slots)

            return publish
        if self.http is not None:
            http = self.http

            async def call() -> None:
                await self._call(http, slots)

            return call
        return None

    def _publish(self, action: MqttAction, slots: dict[str, str]) -> None:
        topic = fill(action.topic, slots, topic_value)
        if self.publisher is None:
            _LOGGER.warning("intent %s: MQTT is not configured; nothing sent to %s",
                            self.name, topic)  # fmt: skip
            return
        payload = fill(action.payload, slots)
        if not self.publisher.publish(topic, payload, qos=action.qos, retain=action.retain):
            _LOGGER.warning("intent %s: MQTT message to %s dropped", self.name, topic)

    async def _call(self, action: HttpAction, slots: dict[str, str]) -> None:
        url = fill(action.url, slots, _url_value)
        body = fill_json(action.json_body, slots) if action.json_body is not None else None
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(action.method, url, json=body, headers=action.headers) as resp,
            ):
                if resp.status >= 400:
                    _LOGGER.warning("intent %s: %s %s answered HTTP %d",
                                    self.name, action.method, url, resp.status)  # fmt: skip
        except TimeoutError:
            _LOGGER.warning("intent %s: %s %s timed out after %.0f s",
                            self.name, action.method, url, HTTP_TIMEOUT_S)  # fmt: skip
        except (aiohttp.ClientError, OSError, ValueError) as err:
            _LOGGER.warning("intent %s: %s %s failed: %s", self.name, action.method, url, err)


# -- loading ------------------------------------------------------------------


def load_user_intents(
    tables: Sequence[Mapping[str, Any]], *, publisher: Publisher | None = None
) -> list[UserIntent]:
    """Validate and compile ``[[intent]]`` tables; raises TableError (a ConfigError)."""
    intents = [load_user_intent(table, index, publisher) for index, table in enumerate(tables)]
    seen: set[str] = set()
    for index, intent in enumerate(intents):
        if intent.name in seen:
            raise TableError("intent", index, intent.name, "name", "is used by an earlier intent")
        seen.add(intent.name)
    return intents


def load_user_intent(
    table: Mapping[str, Any], index: int, publisher: Publisher | None = None
) -> UserIntent:
    name = table.get("name")
    label = name if isinstance(name, str) else None

    def error(key: str, problem: str, fix: str | None = None) -> TableError:
        return TableError("intent", index, label, key, problem, fix)

    unknown = sorted(set(table) - INTENT_KEYS)
    if unknown:
        valid = ", ".join(sorted(INTENT_KEYS))
        raise error(unknown[0], "is not a known key", f"valid keys: {valid}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise error("name", 'must be a name of letters, digits and _ (e.g. "light_on")')
    allowed = _load_allowed(table.get("slots", {}), error)
    sentences = _load_sentences(table.get("sentences"), allowed, error)
    reply = table.get("reply", "")
    if not isinstance(reply, str):
        raise error("reply", "must be a string")
    mqtt = _load_mqtt(table["mqtt"], error) if "mqtt" in table else None
    http = _load_http(table["http"], error) if "http" in table else None
    if mqtt is not None and http is not None:
        raise error("http", "cannot be given together with `mqtt`", "use one intent for each")
    _check_placeholders(sentences, reply, mqtt, http, error)
    return UserIntent(name, sentences, reply, allowed, mqtt, http, publisher)


_Error = Callable[..., TableError]


def _load_allowed(value: object, error: _Error) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise error("slots", "must be a table of slot = [allowed values]")
    allowed: dict[str, dict[str, str]] = {}
    for slot, values in value.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and _content_words(v) for v in values)
        ):
            raise error(f"slots.{slot}", "must be a non-empty list of words")
        allowed[slot] = {" ".join(_content_words(v)): v for v in values}
    return allowed


def _load_sentences(
    value: object, allowed: Mapping[str, Mapping[str, str]], error: _Error
) -> list[Sentence]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise error("sentences", "must be a non-empty list of strings")
    sentences = []
    for number, template in enumerate(value, start=1):
        try:
            sentences.append(compile_sentence(template, allowed))
        except ValueError as err:
            raise error("sentences", f"entry {number} {template!r}: {err}") from err
    return sentences


def compile_sentence(template: str, allowed: Mapping[str, Mapping[str, str]]) -> Sentence:
    """A regular expression over normalize()d text for one sentence template."""
    parts = _SPLIT.split(template)
    tokens: list[str] = []
    slots: list[str] = []
    for position, part in enumerate(parts):
        if position % 2 == 0:
            tokens += [re.escape(word) for word in _content_words(part)]
            continue
        if part in slots:
            raise ValueError(f"uses {{{part}}} twice")
        if len(slots) == MAX_SLOTS:
            raise ValueError(f"has more than {MAX_SLOTS} slots")
        slots.append(part)
        values = allowed.get(part)
        choice = "|".join(re.escape(v) for v in sorted(values or {}, key=len, reverse=True))
        tokens.append(f"(?P<{part}>{choice or _SLOT_WORDS})")
    if len(tokens) == len(slots):
        raise ValueError("needs at least one word besides its {slots}")
    if "{" in _SPLIT.sub("", template) or "}" in _SPLIT.sub("", template):
        raise ValueError("has a brace that is not a {slot} placeholder")
    pattern = "^" + " ".join(tokens) + "$"
    return Sentence(template, re.compile(pattern), tuple(slots))


def _load_mqtt(value: object, error: _Error) -> MqttAction:
    if not isinstance(value, dict):
        raise error("mqtt", "must be a table { topic = ..., payload = ... }")
    _no_unknown(value, MQTT_KEYS, "mqtt", error)
    topic, payload = value.get("topic"), value.get("payload", "")
    if not isinstance(topic, str) or not topic or "#" in topic or "+" in topic:
        raise error("mqtt.topic", "must be a topic without wildcards (# +)")
    if not isinstance(payload, str):
        raise error("mqtt.payload", "must be a string")
    qos, retain = value.get("qos", 1), value.get("retain", False)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise error("mqtt.qos", "must be 0, 1 or 2")
    if not isinstance(retain, bool):
        raise error("mqtt.retain", "must be true or false")
    return MqttAction(topic, payload, qos, retain)


def _load_http(value: object, error: _Error) -> HttpAction:
    if not isinstance(value, dict):
        raise error("http", "must be a table { url = ..., method = ..., json = ... }")
    _no_unknown(value, HTTP_KEYS, "http", error)
    url, method = value.get("url"), value.get("method", "POST")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise error("http.url", "must be an http:// or https:// URL")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise error("http.method", f"must be one of {', '.join(HTTP_METHODS)}")
    body = value.get("json")
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise error(
            "http.json", "must hold only strings, numbers, booleans, lists and tables"
        ) from err
    headers = value.get("headers", {})
    if not isinstance(headers, dict):
        raise error("http.headers", "must be a table of strings")
    return HttpAction(url, method.upper(), body, _header_values(headers, error))


def _header_values(headers: dict[str, Any], error: _Error) -> dict[str, str]:
    """Header values as strings, or as ``{ file = "ha_token", prefix = "Bearer " }``:
    a secret (a Home Assistant token) read from a root-only file or a systemd
    credential, so that it never sits in the world-readable config."""
    resolved: dict[str, str] = {}
    for name, raw in headers.items():
        key = f"http.headers.{name}"
        if isinstance(raw, str):
            resolved[str(name)] = raw
            continue
        if not isinstance(raw, dict) or set(raw) - {"file", "prefix"} or "file" not in raw:
            raise error(key, 'must be a string or { file = "...", prefix = "Bearer " }')
        file, prefix = raw["file"], raw.get("prefix", "")
        if not isinstance(file, str) or not isinstance(prefix, str):
            raise error(key, "`file` and `prefix` must be strings")
        try:
            secret = read_secret(file, key)
        except ConfigError as err:
            raise error(key, err.message, err.fix) from err
        if not secret:
            raise error(key, f"{file} is empty", "put the secret in the file")
        resolved[str(name)] = prefix + secret
    return resolved


def _no_unknown(value: Mapping[str, Any], known: frozenset[str], key: str, error: _Error) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise error(f"{key}.{unknown[0]}", "is not a known key",
                    f"valid keys: {', '.join(sorted(known))}")  # fmt: skip


def _check_placeholders(
    sentences: Sequence[Sentence], reply: str, mqtt: MqttAction | None,
    http: HttpAction | None, error: _Error,
) -> None:  # fmt: skip
    captured = set.intersection(*(set(s.slots) for s in sentences))
    fields = {"reply": [reply]}
    if mqtt is not None:
        fields |= {"mqtt.topic": [mqtt.topic], "mqtt.payload": [mqtt.payload]}
    if http is not None:
        fields |= {"http.url": [http.url], "http.json": json_strings(http.json_body)}
    for key, texts in fields.items():
        for text in texts:
            missing = sorted(placeholders(text) - captured)
            if missing:
                raise error(key, f"uses {{{missing[0]}}}, which not every sentence captures",
                            "write the slot in every sentence, or drop it here")  # fmt: skip
