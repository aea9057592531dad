"""Prediction for concurrent callers: requests that arrive while the model is busy are
classified together in the next forward pass, so N clients cost about one batch each round
instead of N passes fighting over the same cores.

One consumer task takes every waiting request (whole requests, up to ``max_texts`` texts),
asks the holder for the current model once per round (so a promotion swaps it between
rounds, never inside one), runs it in a thread and resolves each caller's future with its
own slice and the model version that made it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from models.predict import Prediction
from stream.pipeline import Classifier

log = logging.getLogger(__name__)

CurrentModel = Callable[[], Awaitable[Classifier]]


@dataclass
class _Request:
    texts: list[str]
    top_k: int
    done: asyncio.Future[tuple[str, list[Prediction]]] = field(repr=False)


class PredictionBatcher:
    def __init__(self, current_model: CurrentModel, *, max_texts: int = 64) -> None:
        self._current_model = current_model
        self._max_texts = max_texts
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._held: _Request | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prediction-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def predict(self, texts: Sequence[str], *, top_k: int) -> tuple[str, list[Prediction]]:
        """(model version, one prediction per text); raises what loading the model raised
        (ModelNotFoundError when none is promoted)."""
        future: asyncio.Future[tuple[str, list[Prediction]]] = (
            asyncio.get_running_loop().create_future()
        )
        await self._queue.put(_Request(list(texts), top_k, future))
        return await future

    def _take_round(self, first: _Request) -> list[_Request]:
        """The first waiting request, then whole requests while they fit in ``max_texts``
        (a request never straddles two rounds; the one that does not fit waits its turn)."""
        taken, count = [first], len(first.texts)
        while not self._queue.empty():
            nxt = self._queue.get_nowait()
            if count + len(nxt.texts) > self._max_texts:
                self._held = nxt  # first in the next round
                break
            taken.append(nxt)
            count += len(nxt.texts)
        return taken

    async def _next(self) -> _Request:
        held, self._held = self._held, None
        return held if held is not None else await self._queue.get()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            round_ = self._take_round(await self._next())
            try:
                model = await self._current_model()
                texts = [t for r in round_ for t in r.texts]
                top_k = max(r.top_k for r in round_)
                found = await loop.run_in_executor(
                    None, partial(model.predict_texts, texts, top_k=top_k)
                )
            except Exception as exc:  # no model, or the model failed: each caller hears it
                for request in round_:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            start = 0
            for request in round_:
                mine = found[start : start + len(request.texts)]
                start += len(request.texts)
                if not request.done.done():  # a caller that went away is skipped
                    request.done.set_result((model.version, mine))
