"""The OpenAPI 3.1 document of the HTTP API, written by hand (served at /openapi.json).

tests/test_http_api.py checks that it lists every route the server has, and
tests/test_http_fuzz.py that every answer's status is one documented here.
"""

from __future__ import annotations

from typing import Any

import voiced
from voiced.control.surface import MAX_SSE_CLIENTS, MAX_TEXT_CHARS

_REF = "#/components/schemas/"
_ERROR_CODES = {
    "400": "Malformed JSON, a wrong type or an unknown key.",
    "401": "Missing or wrong bearer token (only when a token is set).",
    "403": "A browser request from another origin.",
    "405": "Wrong method for this path.",
    "413": "Body over 64 KiB, or text over the limit.",
    "421": "Without a token: the Host header is not localhost, 127.0.0.1 or [::1] on this "
    "port (DNS rebinding).",
}


def _json(schema: str | dict[str, Any]) -> dict[str, Any]:
    body = {"$ref": _REF + schema} if isinstance(schema, str) else schema
    return {"content": {"application/json": {"schema": body}}}


def _answer(text: str, schema: str | dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": text, **(_json(schema) if schema is not None else {})}


def _errors(*codes: str) -> dict[str, Any]:
    wanted = ("401", "403", "405", "421", *codes)
    return {code: _answer(_ERROR_CODES[code], "Error") for code in wanted}


def _op(
    summary: str,
    ok: dict[str, Any],
    *codes: str,
    body: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*codes)}}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
        op["responses"].update(_errors("400", "413"))
    for code, text in (extra or {}).items():
        op["responses"][code] = _answer(text, "Error")
    return op


_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
_SLOTS = {"type": "object", "additionalProperties": {"type": "string"}}
_TURN_TIMES = ("wake_ms", "speech_start_ms", "speech_end_ms", "asr_done_ms", "first_token_ms",
               "first_chunk_ms", "first_audio_ms", "done_ms")  # fmt: skip
_NULLABLE_MS = {"type": ["number", "null"], "description": "ms on the stream clock"}
_MUTED = {"409": 'The assistant is muted: {"error": "muted"}.'}
_BUSY = {
    "409": 'Muted ({"error": "muted"}) or a turn is in progress ({"error": "busy"}): '
    "answered at once rather than queued, so a caller never waits unboundedly."
}
_PLAIN_TEXT = {
    "200": {"description": "Text", "content": {"text/plain": {"schema": {"type": "string"}}}}
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "Snapshot": {
        "type": "object",
        "required": ["state", "muted", "busy", "volume"],
        "properties": {
            "state": {"enum": ["idle", "listening", "thinking", "speaking", "muted"]},
            "muted": {"type": "boolean"},
            "busy": {"type": "boolean"},
            "volume": {"type": "number"},
        },
    },
    "Turn": {
        "type": "object",
        "properties": {
            "turn_id": {"type": "integer"},
            "kind": {"enum": ["voice", "text", "say"]},
            "transcript": {"type": "string"},
            "reply": {"type": "string"},
            "intent": {"type": ["string", "null"]},
            "slots": _SLOTS,
            "outcome": {"type": "string"},
            "error": {"type": ["string", "null"]},
            **{name: _NULLABLE_MS for name in _TURN_TIMES},
            "stages_ms": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "utterance, asr, first_token, first_chunk, "
                "tts_first_chunk, speaking (ms)",
            },
        },
    },
    "Status": {
        "allOf": [
            {"$ref": _REF + "Snapshot"},
            {
                "type": "object",
                "properties": {
                    "models": {"type": "object", "additionalProperties": {"type": "string"}},
                    "uptime_s": {"type": "number"},
                    "turns": {"type": "array", "items": {"$ref": _REF + "Turn"}},
                    "echo": {
                        "type": "object",
                        "description": "Who cancels the speaker's echo (voiced, device or "
                        "none) and why; for ours, the speaker-to-microphone delay_ms, "
                        "residual_db and whether it has converged.",
                    },
                },
            },
        ]
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "ready": {"type": "boolean"},
            "reason": {"type": "string"},
        },
    },
    "SayRequest": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {"text": _TEXT},
    },
    "AskRequest": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {"text": _TEXT, "speak": {"type": "boolean", "default": False}},
    },
    "AskResponse": {
        "type": "object",
        "required": ["reply", "intent", "slots"],
        "properties": {
            "reply": {"type": "string"},
            "intent": {"type": ["string", "null"]},
            "slots": _SLOTS,
        },
    },
    "MuteRequest": {
        "type": "object",
        "required": ["muted"],
        "additionalProperties": False,
        "properties": {"muted": {"type": "boolean"}},
    },
    "Queued": {"type": "object", "properties": {"queued": {"type": "integer"}}},
}
"""Component schemas."""

PATHS: dict[str, Any] = {
    "/": {
        "get": _op(
            "Status page (HTML); asks for the token itself, if one is set",
            {"200": {"description": "HTML", "content": {"text/html": {}}}},
        )
    },
    "/healthz": {"get": _op("Liveness: the server answers", {"200": _answer("Alive", "Health")})},
    "/readyz": {
        "get": _op(
            "Readiness: models loaded and audio frames arrived in the last 2 s",
            {
                "200": _answer("Ready", "Health"),
                "503": _answer("Not ready, with a reason", "Health"),
            },
        )
    },
    "/api/status": {
        "get": _op(
            "State, models, uptime, volume and the last turns",
            {"200": _answer("Status", "Status")},
        )
    },
    "/api/say": {
        "post": _op(
            "Speak text when idle (queued, at most 8 waiting)",
            {"202": _answer("Queued", "Queued")},
            body="SayRequest",
            extra={**_MUTED, "429": "Eight announcements already wait."},
        )
    },
    "/api/ask": {
        "post": _op(
            "Text in, reply out; spoken too when speak is true",
            {
                "200": _answer("The reply", "AskResponse"),
                "503": _answer("An engine failed", "Error"),
            },
            body="AskRequest",
            extra=_BUSY,
        )
    },
    "/api/listen": {
        "post": _op(
            "Start listening as if the wake word was heard",
            {"202": _answer("Listening", "Snapshot")},
            extra=_BUSY,
        )
    },
    "/api/stop": {
        "post": _op("Stop speaking; the turn ends", {"200": _answer("Stopped", "Snapshot")})
    },
    "/api/mute": {
        "post": _op(
            "Mute or unmute the microphone",
            {"200": _answer("The new state", "Snapshot")},
            body="MuteRequest",
        )
    },
    "/api/events": {
        "get": _op(
            "Server-sent events: `state` (a Snapshot) first, then every bus event "
            "(named by its type, data: {type, data, stream_ms, timestamp}); "
            "a comment line every 15 s keeps the stream alive",
            {
                "200": {
                    "description": "Event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            },
            extra={"503": f"{MAX_SSE_CLIENTS} streams are open already (Retry-After: 5)."},
        )
    },
    "/metrics": {"get": _op("Prometheus metrics (text exposition format 0.0.4)", _PLAIN_TEXT)},
    "/openapi.json": {
        "get": _op("This document", {"200": _answer("OpenAPI 3.1", {"type": "object"})})
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voiced HTTP API",
            "version": voiced.__version__,
            "description": (
                "Local control of the voiced assistant. Bound to loopback by default; when "
                "a token is set, every request (but the status page) needs "
                '`Authorization: Bearer <token>`. Errors are JSON: {"error", "message"}. '
                "Unknown paths answer 404."
            ),
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
