"""A database outage in the worker: the batch's write is retried until it succeeds, so the
batch is neither lost nor acknowledged early (the agent awaits ``write_batch``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import StorageError
from core.schemas import ClassifiedPaper, Paper, ScoredLabel
from stream import agent

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class FlakyEngine:
    """``begin()`` fails ``failures`` times (database down), then records the writes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    @asynccontextmanager
    async def begin(self) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageError("database 'arxiv_stream' on db:5432 is unreachable")
        yield object()


async def test_write_batch_retries_through_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[str, int]] = []
    sleeps: list[float] = []

    async def upsert_papers(conn: object, papers: Sequence[Paper], *, now: datetime) -> list[Paper]:
        written.append(("papers", len(papers)))
        return list(papers)

    async def upsert_labels(conn: object, rows: Sequence[object]) -> int:
        written.append(("labels", len(rows)))
        return len(rows)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(agent.repository, "upsert_papers", upsert_papers)
    monkeypatch.setattr(agent.repository, "upsert_labels", upsert_labels)
    monkeypatch.setattr(agent.asyncio, "sleep", fake_sleep)
    paper = Paper(arxiv_id="2411.00001", version=1, title="T", categories=["cs.LG"], source="rss")
    label = ScoredLabel(label="cs.LG", score=0.9)
    classified = ClassifiedPaper(
        arxiv_id="2411.00001", version=1, title="T", categories=["cs.LG"],
        domain=ScoredLabel(label="Computer Science", score=0.95), category=label,
        domain_top_k=[], category_top_k=[label], agrees_with_declared=True,
        model_version="m20261122-000000-abcd", classified_at=NOW,
    )  # fmt: skip
    engine = FlakyEngine(failures=6)

    await agent.write_batch(engine, [classified], [paper], NOW)  # type: ignore[arg-type]

    assert engine.attempts == 7
    assert written == [("papers", 1), ("labels", 1)]  # once, after the outage
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # backoff, capped
