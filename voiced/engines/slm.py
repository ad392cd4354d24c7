"""The small language model: a CTranslate2 generator streaming tokens.

The model directory holds the CTranslate2 files plus ``tokenizer.json``,
``chat_template.jinja`` and ``voiced_generation.json`` (special tokens), as
written by the GGUF converter; a user's own generator directory needs the same.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiced.errors import EngineError, ModelError
from voiced.settings import SlmSettings

Message = dict[str, str]
_ENGINES: weakref.WeakSet[SlmEngine] = weakref.WeakSet()
MAX_PAUSE_S = 1.0
"""Longest a paused generation waits before going on regardless: a pause is a
preference for the CPU, never a way to stall a reply."""
PAUSE_POLL_S = 0.02
"""How often a paused generation looks whether it was cancelled."""


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    bos_token: str
    eos_token: str
    end_of_turn_token: str


class SlmEngine:
    """Blocking: iterate ``stream_reply`` in a worker thread, never the event loop."""

    def __init__(self, model_dir: Path, settings: SlmSettings) -> None:
        import ctranslate2
        from tokenizers import Tokenizer

        self.settings = settings
        self._callbacks_alive = 0
        self._callbacks_freed = threading.Condition()
        _ENGINES.add(self)
        try:
            self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            self.template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
            special = json.loads((model_dir / "voiced_generation.json").read_text())
            self.special = SpecialTokens(
                str(special["bos_token"]), str(special["eos_token"]),
                str(special["end_of_turn_token"]),
            )  # fmt: skip
            self.generator = ctranslate2.Generator(
                str(model_dir), device=settings.device, compute_type=settings.compute_type,
                intra_threads=settings.intra_threads, inter_threads=1,
            )  # fmt: skip
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(
                f"cannot load the language model in {model_dir}: {err}",
                fix="run `voiced models verify`, then `voiced models prepare --force`",
            ) from err

    def render(self, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
        from voiced.models.chat_template import render_chat

        return render_chat(
            self.template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.special.bos_token, eos_token=self.special.eos_token,
        )  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _tokens(self, text: str) -> list[str]:
        tokens: list[str] = self.tokenizer.encode(text, add_special_tokens=False).tokens
        return tokens

    def stream_reply(
        self, system_prompt: str, history: list[Message], *, max_tokens: int,
        cancel: threading.Event | None = None, proceed: threading.Event | None = None,
    ) -> Iterator[str]:  # fmt: skip
        """Text deltas of the assistant's reply, stopping at the end-of-turn token.

        The system prompt is passed as CTranslate2's ``static_prompt`` so the model
        state after it is computed once and reused on every turn. While ``proceed``
        is clear, generation waits between tokens (at most MAX_PAUSE_S at a time),
        leaving the CPU to speech synthesis.
        """

        def between_tokens(_step: Any) -> bool:
            # Runs in CTranslate2's own thread, so waiting here pauses generation;
            # returning True ends it at once when the reply is cancelled.
            if proceed is not None:
                for _ in range(round(MAX_PAUSE_S / PAUSE_POLL_S)):
                    if proceed.wait(PAUSE_POLL_S) or (cancel is not None and cancel.is_set()):
                        break
            return cancel is not None and cancel.is_set()

        self._track(between_tokens)

        system = [{"role": "system", "content": system_prompt}]
        static_text = self.render(system, add_generation_prompt=False)
        full_text = self.render(system + history)
        if not full_text.startswith(static_text):
            static_text = ""  # a template that does not prefix-extend: no caching
        steps = self.generator.generate_tokens(
            self._tokens(full_text[len(static_text) :]),
            static_prompt=self._tokens(static_text) or None,
            max_length=max_tokens, sampling_topk=1,
            end_token=[self.special.end_of_turn_token, self.special.eos_token],
            callback=between_tokens,
        )  # fmt: skip
        ids: list[int] = []
        emitted = ""
        try:
            for step in steps:
                if cancel is not None and cancel.is_set():
                    break
                ids.append(step.token_id)
                text = self.tokenizer.decode(ids)
                if text.endswith("\ufffd"):
                    continue  # a multi-byte character is still incomplete
                if len(text) > len(emitted):
                    yield text[len(emitted) :]
                    emitted = text
        except RuntimeError as err:
            raise EngineError(f"the language model failed: {err}") from err
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    def _track(self, callback: Any) -> None:
        """CTranslate2 frees a job's Python callbacks (ours, and the one its own
        generate_tokens wraps around it) in its own thread, a moment after the last
        token, and needs the GIL for that: at interpreter exit that thread is killed
        and the process aborts. Counted so that an exit can wait for them."""
        with self._callbacks_freed:
            self._callbacks_alive += 1
        weakref.finalize(callback, self._freed)

    def _freed(self) -> None:
        with self._callbacks_freed:
            self._callbacks_alive -= 1
            self._callbacks_freed.notify_all()

    def wait_released(self, timeout_s: float) -> bool:
        """Blocking: until CTranslate2 let go of every callback (True), or the timeout."""
        with self._callbacks_freed:
            return self._callbacks_freed.wait_for(lambda: self._callbacks_alive == 0, timeout_s)

    def reply(self, system_prompt: str, history: list[Message], *, max_tokens: int) -> str:
        return "".join(self.stream_reply(system_prompt, history, max_tokens=max_tokens))


def wait_all_released(timeout_s: float) -> bool:
    """Blocking, before the process exits: until CTranslate2 has let go of every
    callback of every loaded language model (see SlmEngine._track)."""
    return all(engine.wait_released(timeout_s) for engine in list(_ENGINES))
