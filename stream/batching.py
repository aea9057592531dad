"""Batches for the classification agent: an early flush, and acknowledgements left to it.

Faust's ``take_events`` waits its whole ``within`` window for a batch that is not full, even
when the partitions have nothing more to give (a lone paper waited up to 2 s for the timer),
and it acknowledges a batch as soon as the next one is asked for. Here:
- a batch is handed over when it is full, when ``within`` has passed since its first event
  (``BATCH_WITHIN_S`` keeps that meaning), or when no event came for ``idle_s``: the stream
  has nothing more for now, and a lone paper goes at once;
- nothing is acknowledged here: the agent acks a batch (``Batch.ack``) once its papers are
  stored and sent, so it may embed batch k+1 while batch k is written, and no offset is
  committed before its paper is safe (at-least-once, as before).
A pump task moves events from the stream into a queue of at most ``max_`` events, so that at
most one batch is read ahead, as with ``take_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from faust.types import EventT, StreamT


@dataclass
class Batch:
    events: list[EventT[Any]]
    stream: StreamT[Any]
    """The manual-ack stream the events came from."""

    async def ack(self) -> None:
        """The batch is safe (stored, sent or dead-lettered): its offsets may be committed."""
        for event in self.events:
            await self.stream.ack(event)


async def batches(
    stream: StreamT[Any], *, max_: int, within_s: float, idle_s: float
) -> AsyncGenerator[Batch, None]:
    """Yield batches of at most ``max_`` events from ``stream`` (see the module docstring).
    Ends when the stream ends; a failure of the stream is raised here."""
    manual = stream.noack()  # type: ignore[attr-defined]  # missing from StreamT
    queue: asyncio.Queue[EventT[Any]] = asyncio.Queue(maxsize=max_)

    async def pump() -> None:
        async for event in manual.events():
            await queue.put(event)

    pumping = asyncio.ensure_future(pump())
    loop = asyncio.get_running_loop()
    try:
        while True:
            first = asyncio.ensure_future(queue.get())
            await asyncio.wait({first, pumping}, return_when=asyncio.FIRST_COMPLETED)
            if not first.done():  # the stream ended (or failed: result() raises it)
                first.cancel()
                pumping.result()
                return
            events = [first.result()]
            deadline = loop.time() + within_s
            while len(events) < max_:
                wait = min(idle_s, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    events.append(await asyncio.wait_for(queue.get(), wait))
                except TimeoutError:
                    break
            yield Batch(events, manual)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
