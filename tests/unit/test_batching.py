"""stream.batching.batches: a batch goes when full, when its window has passed, or when the
stream has been idle; nothing is acknowledged until the agent says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stream.batching import Batch, batches


class FakeStream:
    """What ``batches`` uses of a Faust stream: ``noack().events()`` and ``ack``."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Any] = asyncio.Queue()
        self.acked: list[Any] = []
        self.manual = False

    def noack(self) -> FakeStream:
        self.manual = True
        return self

    async def events(self) -> AsyncIterator[Any]:
        while True:
            event = await self.incoming.get()
            if event is None:  # end of stream
                return
            yield event

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True


async def _next(it: AsyncIterator[Batch], timeout: float = 5.0) -> Batch:
    return await asyncio.wait_for(it.__anext__(), timeout)


async def test_a_lone_event_goes_after_the_idle_gap_not_the_window() -> None:
    stream = FakeStream()
    it = batches(stream, max_=64, within_s=30.0, idle_s=0.05)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    stream.incoming.put_nowait("a")
    started = loop.time()
    batch = await _next(it)
    assert batch.events == ["a"]
    assert loop.time() - started < 1.0  # not the 30 s window
    assert stream.manual and stream.acked == []  # batches() never acks
    await batch.ack()
    assert stream.acked == ["a"]
    await it.aclose()  # type: ignore[attr-defined]


async def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_next() -> None:
    stream = FakeStream()
    it = batches(stream, max_=3, within_s=30.0, idle_s=30.0)  # type: ignore[arg-type]
    for event in "abcde":
        stream.incoming.put_nowait(event)
    first = await _next(it, timeout=1.0)  # full: neither the window nor the idle gap
    assert first.events == ["a", "b", "c"]
    stream.incoming.put_nowait("f")
    second = await _next(it, timeout=1.0)
    assert second.events == ["d", "e", "f"]
    assert stream.acked == []
    await it.aclose()  # type: ignore[attr-defined]


async def test_a_steady_trickle_goes_when_the_window_closes() -> None:
    stream = FakeStream()
    it = batches(stream, max_=1000, within_s=0.3, idle_s=0.2)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()

    async def trickle() -> None:  # one event every 50 ms: never idle for 0.2 s
        for i in range(40):
            stream.incoming.put_nowait(i)
            await asyncio.sleep(0.05)

    feeding = asyncio.ensure_future(trickle())
    started = loop.time()
    batch = await _next(it)
    assert 0.25 <= loop.time() - started < 1.5  # the 0.3 s window, not the trickle's end
    assert 3 <= len(batch.events) < 40
    feeding.cancel()
    await it.aclose()  # type: ignore[attr-defined]


async def test_the_batches_end_with_the_stream_and_a_stream_failure_is_raised() -> None:
    stream = FakeStream()
    it = batches(stream, max_=10, within_s=30.0, idle_s=0.05)  # type: ignore[arg-type]
    stream.incoming.put_nowait("a")
    assert (await _next(it)).events == ["a"]
    stream.incoming.put_nowait(None)
    with pytest.raises(StopAsyncIteration):
        await _next(it)

    class Broken(FakeStream):
        async def events(self) -> AsyncIterator[Any]:
            raise RuntimeError("consumer crashed")
            yield  # an async generator

    broken = batches(Broken(), max_=10, within_s=30.0, idle_s=0.05)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="consumer crashed"):
        await _next(broken)
