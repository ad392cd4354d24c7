"""One turn's record: what was heard and said, with stage times for the trace."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass(slots=True)
class TurnRecord:
    """Times are ms from stream start (the stream clock), None until reached."""

    turn_id: int
    kind: str = "voice"
    """voice (spoken), text (API ask), say (announcement)."""
    transcript: str = ""
    reply: str = ""
    intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    wake_ms: float | None = None
    speech_start_ms: float | None = None
    speech_end_ms: float | None = None
    endpoint_ms: float | None = None
    """When the endpointer committed the end of the utterance."""
    asr_done_ms: float | None = None
    first_token_ms: float | None = None
    first_chunk_ms: float | None = None
    """The first speakable clause was ready for TTS."""
    first_audio_ms: float | None = None
    done_ms: float | None = None
    outcome: str = "pending"
    """answered, no_speech, empty_transcript, barged_in, cancelled, error."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 1)
        return data


class TraceWriter:
    """``--trace FILE.jsonl``: one JSON object per finished turn, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._handle: IO[str] = path.open("w", encoding="utf-8")

    def write(self, turn: TurnRecord) -> None:
        self._handle.write(json.dumps(turn.to_dict(), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
