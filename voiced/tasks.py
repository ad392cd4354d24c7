"""Asyncio task helpers shared by the control plane."""

from __future__ import annotations

import asyncio

CANCEL_RETRY_S = 0.1


async def cancel_and_wait(
    tasks: set[asyncio.Task[None]], *, retry_s: float = CANCEL_RETRY_S
) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    On Python 3.11 ``asyncio.wait_for`` (which aiomqtt's publish uses) can swallow
    a cancel that arrives just as the awaited future completes; the task then goes
    on to its next await and a single cancel-and-gather never returns (seen as the
    MQTT bridge hanging at shutdown after a broker restart). So a task still
    running ``retry_s`` later is cancelled again.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
