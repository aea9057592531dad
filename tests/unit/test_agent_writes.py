"""The worker's failure policy around PostgreSQL and the broker, with stand-ins for both:
- a database outage: the batch's write is retried until it succeeds, so the batch is neither
  lost nor acknowledged early (the agent awaits ``write_batch``);
- a permanent refusal: the batch is written paper by paper and only the refused paper
  becomes a ``store`` dead letter;
- sends: each is awaited; failed ones are reported, dead letters retried until delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import StorageError
from core.schemas import ClassifiedPaper, Paper, ScoredLabel, encode
from stream import agent
from stream.pipeline import RawMessage

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def pair(arxiv_id: str, title: str = "T") -> tuple[Paper, ClassifiedPaper]:
    paper = Paper(arxiv_id=arxiv_id, version=1, title=title, categories=["cs.LG"], source="rss")
    label = ScoredLabel(label="cs.LG", score=0.9)
    classified = ClassifiedPaper(
        arxiv_id=arxiv_id, version=1, title=title, categories=["cs.LG"],
        domain=ScoredLabel(label="Computer Science", score=0.95), category=label,
        domain_top_k=[], category_top_k=[label], agrees_with_declared=True,
        model_version="m20261122-000000-abcd", classified_at=NOW,
    )  # fmt: skip
    return paper, classified


async def unpublished_keys(conn: object, keys: Any) -> set[tuple[str, int, str]]:
    return set(keys)


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

    async def upsert_papers(
        conn: object, papers: Sequence[Paper], *, now: datetime, seen: bool = True
    ) -> list[Paper]:
        written.append(("papers" if seen else "papers, not seen", len(papers)))
        return list(papers)

    async def upsert_labels(conn: object, rows: Sequence[object]) -> int:
        written.append(("labels", len(rows)))
        return len(rows)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(agent.repository, "upsert_papers", upsert_papers)
    monkeypatch.setattr(agent.repository, "upsert_labels", upsert_labels)
    monkeypatch.setattr(agent.repository, "unpublished_keys", unpublished_keys)
    monkeypatch.setattr(agent.asyncio, "sleep", fake_sleep)
    paper, classified = pair("2411.00001")
    engine = FlakyEngine(failures=6)

    to_send = await agent.write_batch(engine, [classified], [paper], NOW)  # type: ignore[arg-type]

    assert to_send == {("2411.00001", 1, "m20261122-000000-abcd")}
    assert engine.attempts == 7
    # once, after the outage; the worker did not see the paper in a feed: last_seen_at stays
    assert written == [("papers, not seen", 1), ("labels", 1)]
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # backoff, capped


class RefusingEngine:
    """A database that refuses (permanently, not an outage) any batch holding a bad id."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.committed: list[list[str]] = []

    @asynccontextmanager
    async def begin(self) -> Any:
        batch: list[str] = []
        yield batch
        if self.bad in batch:
            raise ValueError("invalid byte sequence for encoding UTF8: 0x00")  # a DataError
        self.committed.append(batch)


async def test_a_refused_paper_is_dead_lettered_and_the_rest_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def upsert_papers(
        conn: list[str], papers: Sequence[Paper], *, now: datetime, seen: bool = True
    ) -> None:
        conn.extend(p.arxiv_id for p in papers)

    async def upsert_labels(conn: object, rows: Sequence[object]) -> int:
        return len(rows)

    monkeypatch.setattr(agent.repository, "upsert_papers", upsert_papers)
    monkeypatch.setattr(agent.repository, "upsert_labels", upsert_labels)
    monkeypatch.setattr(agent.repository, "unpublished_keys", unpublished_keys)
    pairs = [pair(f"2411.0000{i}") for i in range(1, 4)]
    sources = [RawMessage(p.arxiv_id, encode(p)) for p, _ in pairs]
    engine = RefusingEngine(bad="2411.00002")

    stored, to_send, dead = await agent.write_isolating(
        engine,  # type: ignore[arg-type]
        [c for _, c in pairs], [p for p, _ in pairs], sources, now=NOW, topic="papers",
    )  # fmt: skip

    assert [c.arxiv_id for c in stored] == ["2411.00001", "2411.00003"]
    assert engine.committed == [["2411.00001"], ["2411.00003"]]  # one by one after the refusal
    assert {k[0] for k in to_send} == {"2411.00001", "2411.00003"}
    assert [(d.reason, d.key) for d in dead] == [("store", "2411.00002")]
    assert "0x00" in dead[0].error and dead[0].payload_sha256


async def test_deliver_awaits_each_send_and_reports_failures() -> None:
    loop = asyncio.get_running_loop()

    async def send(key: bytes | None, value: bytes) -> asyncio.Future[str]:
        if value == b"raise":
            raise RuntimeError("MessageSizeTooLargeError")
        future: asyncio.Future[str] = loop.create_future()
        if value == b"lost":
            future.set_exception(ConnectionError("broker went away"))
        else:
            future.set_result("metadata")
        return future

    items = [(b"a", b"ok"), (b"b", b"raise"), (b"c", b"lost"), (None, b"ok")]
    assert await agent.deliver(send, items) == [True, False, False, True]


async def test_dead_letters_are_retried_until_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[bytes] = []
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def send(key: bytes | None, value: bytes) -> str:
        attempts.append(value)
        if len(attempts) <= 3:
            raise ConnectionError("broker down")
        return "metadata"

    monkeypatch.setattr(agent.asyncio, "sleep", fake_sleep)
    await agent.deliver_until_sent(send, [(b"k", b"dead letter")])  # type: ignore[arg-type]
    assert len(attempts) == 4 and sleeps == [1.0, 2.0, 4.0]


def test_transient_and_permanent_errors_are_told_apart() -> None:
    assert agent.is_transient(StorageError("PostgreSQL unavailable"))
    assert agent.is_transient(ConnectionRefusedError())
    assert agent.is_transient(TimeoutError())
    assert not agent.is_transient(ValueError("value out of int32 range"))


def test_batches_at_once_are_the_models_lowered_by_the_setting() -> None:
    from types import SimpleNamespace

    from pydantic import ValidationError

    from core.settings import Settings

    openvino, says_nothing = SimpleNamespace(concurrent_batches=2), object()
    unset = Settings(_env_file=None)  # type: ignore[call-arg]
    assert agent.batches_at_once(unset, openvino) == 2
    assert agent.batches_at_once(unset, says_nothing) == 1  # e.g. a fine-tuned encoder
    one = Settings(_env_file=None, concurrent_batches=1)  # type: ignore[call-arg]
    assert agent.batches_at_once(one, openvino) == 1
    three = Settings(_env_file=None, concurrent_batches=3)  # type: ignore[call-arg]
    assert agent.batches_at_once(three, openvino) == 2  # the setting only lowers it
    assert agent.batches_at_once(three, says_nothing) == 1
    with pytest.raises(ValidationError):
        Settings(_env_file=None, concurrent_batches=0)  # type: ignore[call-arg]
