"""An in-process stand-in for everything around the classification agent.

The real agent (``stream.agent.register_classifier``) runs on the real Faust app
(``stream.app.create_app``) through Faust's ``agent.test_context()``: messages are put on an
in-memory channel and flow through the real batching (``stream.batching``), the real model holder
and the real write / deliver / dead-letter code. What stands in:
- the broker's producer (``FakeProducer``): records every send per topic and acknowledges it.
  faust-streaming 0.15.3 has no ``memory://`` broker transport (only aiokafka and
  confluent), so ``app.producer`` is replaced and the consumer is never started;
- PostgreSQL (``FakeDatabase``): an engine whose transactions commit or roll back, and the
  four repository functions the agent calls, keyed like the real tables (a replay
  overwrites a row instead of adding one);
- the model (``StubClassifier``): deterministic labels; its version is the one the holder
  asked the loader for;
- ``asyncio.sleep`` *as seen by stream.agent only*: its retry backoff is recorded, not
  waited; Faust keeps the real one.

A batch is finished when the agent logs its ``batch: ...`` summary line, its last step;
``Running.batches(n)`` waits for that, so a test asserts on a quiet agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP, RecordMetadata
from sqlalchemy.exc import DataError

from core.errors import StorageError
from core.schemas import ClassifiedPaper, DeadLetter, Paper, encode
from core.settings import Settings
from db import repository
from db.repository import LabelKey, LabelRow
from models.predict import Prediction, Scored
from stream import agent as agent_module
from stream.app import create_app
from stream.model_holder import ModelHolder

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TOPIC_PAPERS = "test-papers"
TOPIC_CLASSIFIED = "test-classified"
TOPIC_DEAD = "test-dead-letter"
WAIT_S = 10.0
"""Longest a test waits for the agent (a batch takes milliseconds)."""
BATCH_WITHIN_S = 30.0
"""Longer than any test (as the idle flush too): a batch is flushed only when full, so batch
boundaries are exact."""


def paper(arxiv_id: str, *, version: int = 1) -> Paper:
    return Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=f"Paper {arxiv_id}",
        abstract="We study things.",
        categories=["cs.LG", "stat.ML"],
        source="rss",
    )


def message(p: Paper) -> tuple[str, bytes]:
    """A papers-topic message as the ingester publishes it: (key, value)."""
    return p.arxiv_id, encode(p)


# --- the broker ---------------------------------------------------------------------------


@dataclass
class FakeProducer:
    """What Faust's ``Topic.send`` needs from ``app.producer``: ``maybe_start``, and ``send``
    returning a future of the broker's acknowledgement."""

    sent: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=dict)

    async def maybe_start(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        log = self.sent.setdefault(topic, [])
        log.append((key, value))
        ack: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        ack.set_result(RecordMetadata(topic, 0, TP(topic, 0), len(log) - 1))
        return ack

    def on(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        return self.sent.get(topic, [])


# --- PostgreSQL ---------------------------------------------------------------------------


@dataclass
class Transaction:
    """What one ``engine.begin()`` block wrote; applied only if the block ends cleanly."""

    papers: list[Paper] = field(default_factory=list)
    labels: list[LabelRow] = field(default_factory=list)
    published: list[LabelKey] = field(default_factory=list)


@dataclass
class FakeDatabase:
    """``papers`` and ``labels`` keyed like the real tables; every committed transaction is
    kept in ``commits`` so a test can count writes."""

    refuse: set[str] = field(default_factory=set)
    """arXiv ids PostgreSQL refuses for good: a transaction writing one fails (DataError)."""
    outages: int = 0
    """How many ``begin()`` calls fail as if the server were unreachable (StorageError)."""
    papers: dict[str, Paper] = field(default_factory=dict)
    labels: dict[LabelKey, LabelRow] = field(default_factory=dict)
    published: set[LabelKey] = field(default_factory=set)
    commits: list[Transaction] = field(default_factory=list)
    begins: int = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Transaction]:
        self.begins += 1
        if self.outages > 0:
            self.outages -= 1
            raise StorageError("PostgreSQL unavailable (db:5432/arxiv_stream): connection refused")
        tx = Transaction()
        yield tx  # an exception in the block propagates here: nothing of tx is applied
        self.papers.update({p.arxiv_id: p for p in tx.papers})
        self.labels.update({_key(r): r for r in tx.labels})
        self.published.update(tx.published)
        self.commits.append(tx)

    @property
    def label_writes(self) -> list[list[LabelKey]]:
        """Each committed transaction that wrote labels, as the keys it wrote."""
        return [[_key(r) for r in tx.labels] for tx in self.commits if tx.labels]

    # The repository functions stream.agent calls, with their signatures.

    async def upsert_papers(
        self, conn: Transaction, papers: Sequence[Paper], *, now: datetime, seen: bool = True
    ) -> list[Paper]:
        refused = [p.arxiv_id for p in papers if p.arxiv_id in self.refuse]
        if refused:
            raise DataError(
                "INSERT INTO papers ...",
                {},
                Exception(f"invalid byte sequence for encoding UTF8 ({refused[0]})"),
            )
        conn.papers.extend(papers)
        return list(papers)

    async def upsert_labels(self, conn: Transaction, rows: Sequence[LabelRow]) -> int:
        conn.labels.extend(rows)
        return len({_key(r) for r in rows})

    async def unpublished_keys(self, conn: Transaction, keys: Iterable[LabelKey]) -> set[LabelKey]:
        present = set(self.labels) | {_key(r) for r in conn.labels}  # its own writes included
        return {k for k in keys if k in present and k not in self.published}

    async def mark_labels_published(
        self, conn: Transaction, keys: Iterable[LabelKey], *, now: datetime
    ) -> int:
        wanted = list(keys)
        conn.published.extend(wanted)
        return len(wanted)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("upsert_papers", "upsert_labels", "unpublished_keys", "mark_labels_published"):
            monkeypatch.setattr(repository, name, getattr(self, name))  # as stream.agent sees it


def _key(row: LabelRow) -> LabelKey:
    return (row.arxiv_id, row.version, row.model_version)


# --- the model ------------------------------------------------------------------------------


@dataclass
class Registry:
    """The promoted version, as the database would report it, and the model loader."""

    promoted: str
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    """Every ``predict_texts`` call: (model version, texts)."""
    during_predict: Callable[[Registry], None] | None = None
    """Runs inside each model call (in the executor thread), e.g. to promote a model while a
    batch is being classified."""
    after_predict: Callable[[Registry], None] | None = None
    """Runs as each model call returns (in the executor thread)."""
    concurrent_batches: int = 1
    """What the models say of themselves: batches the agent may classify at once."""

    async def promoted_version(self) -> str | None:
        return self.promoted

    def load(self, version: str) -> StubClassifier:
        return StubClassifier(version, self)


@dataclass
class StubClassifier:
    """Labels every paper ``cs.LG`` (Computer Science)."""

    version: str
    registry: Registry

    @property
    def concurrent_batches(self) -> int:
        return self.registry.concurrent_batches

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
        self.registry.calls.append((self.version, list(texts)))
        if self.registry.during_predict is not None:
            self.registry.during_predict(self.registry)
        try:
            return self._predictions(texts)
        finally:
            if self.registry.after_predict is not None:
                self.registry.after_predict(self.registry)

    def _predictions(self, texts: Sequence[str]) -> list[Prediction]:
        domain = Scored("Computer Science", 0.9)
        category = Scored("cs.LG", 0.8)
        return [
            Prediction(
                domain=domain,
                category=category,
                domain_top_k=[domain],
                category_top_k=[category, Scored("stat.ML", 0.1)],
                group=domain,
                archive=Scored("cs", 0.9),
                categories=[category],
            )
            for _ in texts
        ]


# --- the harness ----------------------------------------------------------------------------


class _BatchLog(logging.Handler):
    """Counts the agent's end-of-batch summary lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.done = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("batch:"):
            self.done += 1


@dataclass
class Running:
    agent: Any
    """Faust's AgentTestWrapper around the real agent."""
    db: FakeDatabase
    producer: FakeProducer
    registry: Registry
    sleeps: list[float]
    """What stream.agent slept (its retry backoff), in seconds."""
    _log: _BatchLog

    async def put(self, *messages: tuple[str | None, bytes]) -> None:
        for key, value in messages:
            await self.agent.put(
                value=value, key=key.encode() if key is not None else None, wait=False
            )

    async def batches(self, n: int) -> None:
        """Wait until the agent has finished ``n`` batches in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while self._log.done < n:
            if self.agent._crash_reason is not None:
                raise AssertionError(f"the agent crashed: {self.agent._crash_reason!r}")
            if loop.time() > deadline:
                raise AssertionError(f"{self._log.done} batches done after {WAIT_S}s, not {n}")
            await asyncio.sleep(0.005)
        assert self._log.done == n, f"{self._log.done} batches done, expected {n}"

    def classified(self) -> list[tuple[bytes | None, ClassifiedPaper]]:
        return [
            (key, ClassifiedPaper.model_validate_json(value))
            for key, value in self.producer.on(TOPIC_CLASSIFIED)
        ]

    def dead_letters(self) -> list[tuple[bytes | None, DeadLetter]]:
        return [
            (key, DeadLetter.model_validate_json(value))
            for key, value in self.producer.on(TOPIC_DEAD)
        ]


@asynccontextmanager
async def running_classifier(
    monkeypatch: pytest.MonkeyPatch,
    *,
    batch_size: int,
    idle_s: float = BATCH_WITHIN_S,
    db: FakeDatabase | None = None,
    registry: Registry | None = None,
) -> AsyncIterator[Running]:
    """The real agent on the real app, between fakes of the broker, database and model."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        kafka_bootstrap_servers="127.0.0.1:9",  # never contacted: the producer is a fake
        consumer_group="stream-test",
        topic_papers=TOPIC_PAPERS,
        topic_classified=TOPIC_CLASSIFIED,
        topic_dead_letter=TOPIC_DEAD,
        batch_size=batch_size,
        batch_within_s=BATCH_WITHIN_S,
        batch_idle_s=idle_s,
        top_k=2,
    )
    db = db if db is not None else FakeDatabase()
    db.install(monkeypatch)
    registry = registry if registry is not None else Registry(promoted="m1")
    sleeps: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    public_asyncio = {name: getattr(asyncio, name) for name in asyncio.__all__}
    monkeypatch.setattr(
        agent_module, "asyncio", SimpleNamespace(**{**public_asyncio, "sleep": recorded_sleep})
    )
    ticks = iter(range(10**9))

    def clock() -> datetime:  # one second later at every reading
        return START + timedelta(seconds=next(ticks))

    holder = ModelHolder(
        promoted_version=registry.promoted_version,
        loader=registry.load,
        poll_interval_s=0,  # look for a promotion before every batch
    )
    app = create_app(settings)
    producer = FakeProducer()
    app.producer = producer  # type: ignore[assignment]
    classify = agent_module.register_classifier(
        app,
        settings,
        holder=holder,
        engine=db,  # type: ignore[arg-type]
        clock=clock,
    )
    batch_log = _BatchLog()
    logger = logging.getLogger(agent_module.__name__)
    level = logger.level
    logger.addHandler(batch_log)
    logger.setLevel(logging.INFO)
    try:
        async with classify.test_context() as agent:
            yield Running(agent, db, producer, registry, sleeps, batch_log)
    finally:
        logger.removeHandler(batch_log)
        logger.setLevel(level)
        _close_unstarted_consumer(app)


def _close_unstarted_consumer(app: faust.App) -> None:
    """The stream's acknowledgement bookkeeping makes Faust build its Kafka consumer, which
    is never started here; its thread's event loop (and that loop's sockets) would leak."""
    consumer = app._consumer  # built lazily: None when nothing asked for it
    thread = getattr(consumer, "_thread", None)
    if thread is not None and not thread.thread_loop.is_closed():
        thread.thread_loop.close()
