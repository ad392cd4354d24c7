"""From a transcript to reply text: local intents first, else the language model."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from voiced.engines.slm import Message, SlmEngine
from voiced.errors import EngineError
from voiced.intents.base import IntentHandler, IntentMatch, WorldView
from voiced.intents.normalize import normalize
from voiced.intents.unsupported import UnsupportedActions
from voiced.pipeline.claim_guard import REPLACEMENT, guard_claims, verdict
from voiced.pipeline.conversation import Conversation
from voiced.pipeline.model_prompt import clock_message, mentions_time, system_prompt
from voiced.settings import SlmSettings

Remember = Callable[[Callable[[], None]], None]
"""Takes a memory write to do now or later (a speculative run holds it)."""
FALLBACK_REPLY = "Sorry, I can only do local commands right now."
WARM_UP_MESSAGE: Message = {"role": "user", "content": "Hi"}
_LOGGER = logging.getLogger(__name__)


def _log_warm_up_failure(future: concurrent.futures.Future[str]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _LOGGER.warning("the language model's warm-up failed: %s", future.exception())


@dataclass(slots=True)
class Response:
    intent: str | None
    """The matched intent, or None when the language model answers."""
    deltas: AsyncIterator[str]
    """The reply text as it is produced."""
    match: IntentMatch | None = None
    slots: dict[str, str] = field(default_factory=dict)
    streamed: bool = False
    """True while the language model is still writing the reply; False when the
    whole text is known at once."""
    proceed: threading.Event | None = None
    """For a model's reply: clear it to pause generation between tokens (so speech
    synthesis has the CPU), set it to go on. Set when created."""


async def _once(text: str) -> AsyncIterator[str]:
    if text:
        yield text


class Responder:
    def __init__(
        self, handlers: Sequence[IntentHandler], slm: SlmEngine | None, settings: SlmSettings,
        view: WorldView, executor: concurrent.futures.Executor,
    ) -> None:  # fmt: skip
        # Last, before the model: device commands nothing is set up for get a true
        # "I can't" instead of a model reply that might claim it acted.
        self.handlers = [*handlers, UnsupportedActions()]
        self.system_prompt = ""
        """Fixed until the intents change, so the model computes its state once
        (static_prompt); see refresh_prompt."""
        self.slm = slm
        self.settings = settings
        self.view = view
        self.executor = executor
        self.conversation = (
            Conversation(slm.count_tokens, budget_tokens=settings.memory_tokens,
                         idle_reset_s=settings.memory_idle_reset_s)
            if slm else None
        )  # fmt: skip
        self.refresh_prompt()

    def refresh_prompt(self) -> None:
        """Tell the model what the handlers can do now (at start, and after a reload
        swapped the user's intents), and warm its cached state for that prompt."""
        prompt = system_prompt(self.settings.system_prompt, self.handlers)
        if prompt == self.system_prompt:
            return
        self.system_prompt = prompt
        if self.slm is not None and self.settings.enabled:
            # The model's state after the prompt is computed once and cached; do it
            # now in the model's thread, not on the first question.
            warm = self.executor.submit(self.slm.reply, prompt, [WARM_UP_MESSAGE], max_tokens=1)
            warm.add_done_callback(_log_warm_up_failure)

    def match_intent(self, text: str) -> IntentMatch | None:
        """Pure: the first handler's match, or None. Changes nothing, however often."""
        normalized = normalize(text)
        for handler in self.handlers:
            found = handler.match(normalized, self.view)
            if found is not None:
                return found
        return None

    def respond(
        self, text: str, now_s: float, *, remember: Remember | None = None
    ) -> Response:
        """``remember`` receives the memory write of a finished model reply instead of
        it being done at once: a run holds it back until it is committed."""
        found = self.match_intent(text)
        if found is not None:
            return Response(found.intent, _once(found.reply), found, dict(found.slots))
        if self.slm is None or self.conversation is None or not self.settings.enabled:
            return Response(None, _once(FALLBACK_REPLY))
        clock = [clock_message()] if mentions_time(text) else []
        messages = [*clock, *self.conversation.messages_for(text, now_s)]
        proceed = threading.Event()
        proceed.set()
        deltas = guard_claims(self._stream_slm(text, messages, now_s, proceed, remember))
        return Response(None, deltas, streamed=True, proceed=proceed)

    async def _stream_slm(
        self, text: str, messages: list[dict[str, str]], now_s: float,
        proceed: threading.Event, remember: Remember | None = None,
    ) -> AsyncIterator[str]:  # fmt: skip
        """Run the generator in its worker thread and hand deltas to the loop.

        Cancelling the consumer (barge-in) sets ``stop``, which the generator
        checks between tokens, so the worker thread ends within one token.
        """
        assert self.slm is not None and self.conversation is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        slm = self.slm
        stop = threading.Event()

        def produce() -> None:
            try:
                for delta in slm.stream_reply(
                    self.system_prompt, messages,
                    max_tokens=self.settings.max_reply_tokens, cancel=stop,
                    proceed=proceed,
                ):  # fmt: skip
                    loop.call_soon_threadsafe(queue.put_nowait, delta)
            except EngineError as err:
                loop.call_soon_threadsafe(queue.put_nowait, err)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self.executor, produce)
        reply: list[str] = []
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                reply.append(item)
                yield item
            # Only a reply that was produced in full joins the memory: a
            # speculative turn cancelled half-way never happened.
            said = "".join(reply)
            # What was said, as guard_claims let it be said: never the claim.
            write = functools.partial(
                self.conversation.remember, text,
                REPLACEMENT if verdict(said, final=True) else said, now_s,
            )  # fmt: skip
            if remember is None:
                write()
            else:
                remember(write)
        finally:
            stop.set()
            proceed.set()  # a paused generation wakes to see the stop
            await asyncio.shield(future)
