"""api.predict.PredictionBatcher: concurrent callers share forward passes, each gets its own
slice and the model version that made it, rounds never exceed max_texts, errors reach
every caller of the round."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from api.predict import PredictionBatcher
from core.errors import ModelNotFoundError
from models.predict import Prediction, Scored


def _prediction(text: str) -> Prediction:
    s = Scored(text, 1.0)
    return Prediction(s, s, [s], [s], s, s, [])


class Model:
    def __init__(self, version: str) -> None:
        self.version = version
        self.calls: list[list[str]] = []

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
        self.calls.append(list(texts))
        return [_prediction(t) for t in texts]


async def test_waiting_callers_share_a_round_and_get_their_own_answers() -> None:
    model = Model("m1")

    async def current() -> Model:
        return model

    batcher = PredictionBatcher(current, max_texts=5)
    # enqueue before the consumer starts, so everything waits together
    calls = [asyncio.ensure_future(batcher.predict([f"a{i}", f"b{i}"], top_k=3)) for i in range(4)]
    await asyncio.sleep(0)
    batcher.start()
    try:
        answers = await asyncio.gather(*calls)
    finally:
        await batcher.stop()
    for i, (version, found) in enumerate(answers):
        assert version == "m1"
        assert [p.category.label for p in found] == [f"a{i}", f"b{i}"]
    # 4 requests of 2 texts with at most 5 per round: rounds of 4, 4 texts; never split
    assert [len(c) for c in model.calls] == [4, 4]


async def test_a_failure_reaches_every_caller_of_its_round() -> None:
    async def none() -> Model:
        raise ModelNotFoundError("no promoted model")

    batcher = PredictionBatcher(none)
    batcher.start()
    try:
        with pytest.raises(ModelNotFoundError):
            await batcher.predict(["x"], top_k=1)
        with pytest.raises(ModelNotFoundError):
            await batcher.predict(["y"], top_k=1)
    finally:
        await batcher.stop()
