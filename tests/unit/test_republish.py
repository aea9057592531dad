"""Republishing what the stream lost (ingest.service.Ingester.republish_unlabelled), on a fake
clock, a fake producer and an in-memory stand-in for the repository functions it calls.

The stand-in's ``papers_needing_labels`` mirrors the SQL (no label of the current version
under the asked model, last sent before the cutoff); the SQL itself is tested against
PostgreSQL in tests/integration/test_db.py. Here: what the Ingester asks for, when, what it
sends and in which order, and how long it waits between rounds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace

import pytest

from core.schemas import Paper, encode
from core.settings import Settings
from db import repository
from ingest import service
from ingest.service import Ingester, IngestStats, run_forever

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GRACE_S = 600.0
STEP_S = 60.0
"""``run_forever``'s republish interval."""
TOPIC = "papers-under-test"


def paper(arxiv_id: str) -> Paper:
    return Paper(arxiv_id=arxiv_id, version=1, title=f"Paper {arxiv_id}", categories=["cs.LG"],
                 source="oai")  # fmt: skip


class WallClock:
    """An aware UTC clock that moves only when the code under test sleeps (or a test sets it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> WallClock:
        self.now = T0 + timedelta(seconds=seconds)
        return self

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Store:
    """The database (engine and the repository functions the republish path calls) and the
    Kafka producer in one, so ``events`` holds their calls in the order they happened."""

    clock: WallClock
    promoted: str | None = "m1"
    sent_at: dict[str, datetime] = field(default_factory=dict)
    """published_at, or first_seen_at for a paper never published."""
    papers: dict[str, Paper] = field(default_factory=dict)
    labels: dict[tuple[str, int, str], datetime] = field(default_factory=dict)
    queries: list[dict[str, object]] = field(default_factory=list)
    events: list[tuple[object, ...]] = field(default_factory=list)
    """Sends, flushes and published marks, in order."""
    sent: list[datetime] = field(default_factory=list)
    """When each paper was sent."""

    def add_paper(self, arxiv_id: str, *, sent_at: datetime) -> None:
        self.papers[arxiv_id] = paper(arxiv_id)
        self.sent_at[arxiv_id] = sent_at

    def add_label(self, arxiv_id: str, *, at: datetime, model: str = "m1") -> None:
        self.labels[(arxiv_id, 1, model)] = at

    # the engine
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        yield None

    begin = connect

    # the repository
    async def promoted_model(self, conn: None) -> object | None:
        return SimpleNamespace(version=self.promoted) if self.promoted else None

    async def last_labelled_at(self, conn: None) -> datetime | None:
        return max(self.labels.values(), default=None)

    async def papers_needing_labels(
        self, conn: None, *, model_version: str | None, published_before: datetime, limit: int
    ) -> list[Paper]:
        self.queries.append({"model_version": model_version, "published_before": published_before})

        def labelled(p: Paper) -> bool:
            return any(
                (i, v) == (p.arxiv_id, p.version) and model_version in (None, m)
                for i, v, m in self.labels
            )

        found = [
            p
            for p in self.papers.values()
            if not labelled(p) and self.sent_at[p.arxiv_id] < published_before
        ]
        return sorted(found, key=lambda p: (self.sent_at[p.arxiv_id], p.arxiv_id))[:limit]

    async def upsert_papers(self, conn: None, papers: list[Paper], *, now: datetime) -> list[Paper]:
        self.events.append(("store", [p.arxiv_id for p in papers]))
        fresh = [p for p in papers if p.arxiv_id not in self.papers]
        for p in fresh:
            self.papers[p.arxiv_id] = p
            self.sent_at[p.arxiv_id] = now
        return fresh

    async def mark_published(self, conn: None, arxiv_ids: Iterable[str], *, now: datetime) -> int:
        ids = list(arxiv_ids)
        self.events.append(("mark", ids, now))
        self.sent_at.update(dict.fromkeys(ids, now))
        return len(ids)

    # the Kafka producer
    async def send(self, topic: str, *, key: str, value: bytes) -> None:
        self.events.append(("send", topic, key, value, self.clock()))
        self.sent.append(self.clock())

    async def flush(self) -> None:
        self.events.append(("flush",))

    def republished_at(self) -> list[float]:
        """Seconds after T0 of each paper sent."""
        return [(at - T0).total_seconds() for at in self.sent]


@pytest.fixture
def clock() -> WallClock:
    return WallClock(T0)


@pytest.fixture
def store(clock: WallClock, monkeypatch: pytest.MonkeyPatch) -> Store:
    store = Store(clock)
    for name in (
        "promoted_model",
        "last_labelled_at",
        "papers_needing_labels",
        "mark_published",
        "upsert_papers",
    ):
        monkeypatch.setattr(repository, name, getattr(store, name))  # as ingest.service sees it
    return store


@pytest.fixture
def ingester(store: Store, clock: WallClock) -> Ingester:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        republish_grace_s=GRACE_S,
        topic_papers=TOPIC,
    )
    return Ingester(settings, engine=store, producer=store, clock=clock)  # type: ignore[arg-type]


async def test_only_papers_without_any_label_are_republished(
    store: Store, clock: WallClock, ingester: Ingester
) -> None:
    hour_ago = T0 - timedelta(hours=1)
    store.promoted = "m2"
    store.add_paper("2411.00001", sent_at=hour_ago)
    store.add_label("2411.00001", at=T0 - timedelta(minutes=30), model="m1")  # older model
    store.add_paper("2411.00002", sent_at=hour_ago)  # lost: never labelled
    store.add_paper("2411.00003", sent_at=T0 - timedelta(minutes=5))  # queued, within grace

    assert await ingester.republish_unlabelled() == 1

    # A label under any model counts: a promotion alone republishes nothing.
    assert store.queries == [
        {"model_version": None, "published_before": T0 - timedelta(minutes=10)}
    ]
    # Sent, flushed, and only then marked published (so it waits a full grace again).
    assert store.events == [
        ("send", TOPIC, "2411.00002", encode(store.papers["2411.00002"]), T0),
        ("flush",),
        ("mark", ["2411.00002"], T0),
    ]
    clock.at(STEP_S)  # the next round: it was just sent, so it is queued again, not lost
    assert await ingester.republish_unlabelled() == 0
    assert len(store.events) == 3


async def test_nothing_is_republished_before_a_model_is_promoted(
    store: Store, clock: WallClock, ingester: Ingester
) -> None:
    store.promoted = None
    store.add_paper("2411.00002", sent_at=T0 - timedelta(days=1))
    clock.at(3600)
    assert await ingester.republish_unlabelled() == 0
    assert store.events == [] and store.queries == []


async def test_waits_until_the_stream_was_idle_for_the_grace_period(
    store: Store, clock: WallClock, ingester: Ingester
) -> None:
    store.add_paper("2411.00002", sent_at=T0 - timedelta(hours=1))  # lost long ago
    store.add_label("2411.00009", at=T0)  # but the worker labelled another paper at T0

    for busy in (0, 60, GRACE_S - 1):  # labels flowing: unlabelled papers are queued
        clock.at(busy)
        assert await ingester.republish_unlabelled() == 0
    assert store.events == [] and store.queries == []

    clock.at(GRACE_S)  # no label for the whole grace period: the paper was lost
    assert await ingester.republish_unlabelled() == 1
    assert store.republished_at() == [GRACE_S]


async def test_the_wait_doubles_after_each_round_that_brings_no_label(
    store: Store, clock: WallClock, ingester: Ingester
) -> None:
    store.add_paper("2411.00002", sent_at=T0 - timedelta(hours=1))
    store.add_label("2411.00009", at=T0 - timedelta(hours=1))  # then the worker went quiet

    async def poll() -> IngestStats:
        return IngestStats()

    # Two polls 30,000 s apart; republish_unlabelled every 60 s in between.
    await run_forever(
        poll, ingester, interval_s=30_000, republish_every_s=STEP_S, sleep=clock.sleep, rounds=2
    )

    times = store.republished_at()
    assert times[0] == 0  # lost already at start
    gaps = [later - earlier for earlier, later in pairwise(times)]
    # The grace x 2, 4, 8, 16, then capped (REPUBLISH_BACKOFF_MAX); the cutoff is strict, so
    # each round fires at the first 60 s tick past it.
    assert service.REPUBLISH_BACKOFF_MAX == 16
    assert gaps == [m * GRACE_S + STEP_S for m in (2, 4, 8, 16, 16)]


async def test_the_wait_is_back_to_the_grace_once_labels_flow_again(
    store: Store, clock: WallClock, ingester: Ingester
) -> None:
    store.add_paper("2411.00002", sent_at=T0 - timedelta(hours=1))
    store.add_label("2411.00009", at=T0 - timedelta(hours=1))
    for t in (0, 2 * GRACE_S + STEP_S):  # two rounds without labels: the wait is now 4x
        clock.at(t)
        assert await ingester.republish_unlabelled() == 1

    back = 2 * GRACE_S + 2 * STEP_S
    store.add_label("2411.00010", at=T0 + timedelta(seconds=back))  # the worker is back
    clock.at(back + STEP_S)
    assert await ingester.republish_unlabelled() == 0  # busy again: the wait resets

    # 2411.00002 is still unlabelled: lost again once the stream is idle for one grace
    # (not four).
    clock.at(back + GRACE_S - 1)
    assert await ingester.republish_unlabelled() == 0
    clock.at(back + GRACE_S)
    assert await ingester.republish_unlabelled() == 1
    assert store.republished_at() == [0, 2 * GRACE_S + STEP_S, back + GRACE_S]


async def test_a_large_feed_is_stored_and_published_chunk_by_chunk(
    store: Store, ingester: Ingester
) -> None:
    """The worker gets the first chunk while the rest is stored: per chunk, the papers are
    stored, then the new ones sent, flushed and marked, before the next chunk is stored.
    A paper stored on an earlier poll is not sent again."""
    size = service.PUBLISH_CHUNK
    feed = [paper(f"2411.{i:05d}") for i in range(2 * size + 3)]
    store.add_paper(feed[1].arxiv_id, sent_at=T0)  # seen on an earlier poll

    stats = await ingester.ingest(feed)

    assert (stats.seen, stats.published) == (len(feed), len(feed) - 1)
    expected: list[tuple[object, ...]] = []
    for start in range(0, len(feed), size):
        ids = [p.arxiv_id for p in feed[start : start + size]]
        fresh = [i for i in ids if i != feed[1].arxiv_id]
        expected += [("store", ids), *(("send", i) for i in fresh), ("flush",), ("mark", fresh)]
    happened = [e[:2] if e[0] in ("store", "mark") else (e[0], e[2]) if e[0] == "send" else e
                for e in store.events]  # fmt: skip
    assert happened == expected
