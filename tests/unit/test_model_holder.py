"""Hot reload: a promotion is picked up at the next check, between batches."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import ModelNotFoundError
from stream.model_holder import ModelHolder


class Loaded:
    def __init__(self, version: str) -> None:
        self.version = version

    def predict_texts(self, texts, *, top_k=5):  # type: ignore[no-untyped-def]
        return []


async def test_refuses_to_start_without_a_promoted_model() -> None:
    async def none() -> str | None:
        return None

    holder = ModelHolder(promoted_version=none, loader=Loaded, poll_interval_s=1)
    with pytest.raises(ModelNotFoundError, match="arxiv-stream train"):
        await holder.start()


async def test_swaps_after_promotion_only_when_the_poll_interval_passed() -> None:
    promoted = {"version": "m1"}
    now = {"t": 0.0}

    async def lookup() -> str | None:
        return promoted["version"]

    holder = ModelHolder(
        promoted_version=lookup,
        loader=Loaded,
        poll_interval_s=10,
        clock=lambda: now["t"],
    )
    assert (await holder.start()).version == "m1"
    promoted["version"] = "m2"
    now["t"] = 5
    assert (await holder.current()).version == "m1"  # not checked yet
    now["t"] = 11
    assert (await holder.current()).version == "m2"


async def test_keeps_the_old_model_if_the_new_one_fails_to_load() -> None:
    promoted = {"version": "m1"}

    async def lookup() -> str | None:
        return promoted["version"]

    def loader(version: str) -> Loaded:
        if version == "broken":
            raise OSError("weights missing")
        return Loaded(version)

    holder = ModelHolder(promoted_version=lookup, loader=loader, poll_interval_s=0)
    await holder.start()
    promoted["version"] = "broken"
    assert (await holder.current()).version == "m1"


async def test_concurrent_first_requests_load_once() -> None:
    loads: list[str] = []

    async def lookup() -> str | None:
        return "m1"

    def loader(version: str) -> Loaded:
        loads.append(version)
        return Loaded(version)

    holder = ModelHolder(promoted_version=lookup, loader=loader, poll_interval_s=60)
    first, second = await asyncio.gather(holder.current(), holder.start())
    assert first is second and loads == ["m1"]
