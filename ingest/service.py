"""The ingest loop: papers in, stored, then published. Owns no connection itself.

Invariant that makes the pipeline lossless on an in-memory broker: a paper row is written
to PostgreSQL *before* its message is published, and papers whose current version has no
label (under any model) are published again when they are *lost*, not merely queued:
- the paper was last handed to the stream more than ``republish_grace_s`` ago, and
- the stream is idle: no label at all was written for ``republish_grace_s``. While the
  worker is writing labels, unlabelled papers are queued behind it, and republishing them
  would only add work when it is behind;
- after a round that republished papers, if still no label arrives, the wait doubles (up to
  ``REPUBLISH_BACKOFF_MAX``x the grace): a worker that cannot load its model is not flooded.
Publishing twice is safe: the worker's writes are keyed upserts. A promotion does not
republish anything (``latest_labels`` keeps showing the older labels); ``arxiv-stream
relabel`` classifies stored papers again on purpose.

Only papers that are new, or carry a higher version than the stored one, are published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Protocol

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import Clock
from core.errors import FeedError, StorageError
from core.schemas import Paper, encode
from core.settings import Settings
from db import repository
from ingest import metrics

log = logging.getLogger(__name__)

REPUBLISH_BACKOFF_MAX = 16
PUBLISH_CHUNK = 256
"""Papers stored per transaction and then published, before the next chunk is stored: four
worker batches, so the worker has its first batch after one chunk, not the whole feed."""
Sleep = Callable[[float], Awaitable[None]]


class Republisher(Protocol):
    async def republish_unlabelled(self) -> int: ...


@dataclass
class IngestStats:
    seen: int = 0
    published: int = 0
    republished: int = 0
    deleted: int = 0
    """Stored papers an OAI harvest reported deleted (ingest.oai_sets)."""

    def add(self, other: IngestStats) -> None:
        self.seen += other.seen
        self.published += other.published
        self.republished += other.republished
        self.deleted += other.deleted


class Ingester:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.producer = producer
        self.clock = clock
        self._backoff = 1  # multiplies the grace after rounds that did not bring labels
        self._last_republish_at = datetime.min.replace(tzinfo=UTC)

    async def ingest(self, papers: Sequence[Paper]) -> IngestStats:
        """Store ``papers``; publish the ones that are new or newer than stored.

        In chunks of ``PUBLISH_CHUNK``, each stored and then published before the next is
        stored: the stream starts on a large feed's first papers while the rest are written
        (the whole daily feed in one transaction kept the worker idle ~0.2 s on a fast CPU),
        and a failure part way leaves every earlier chunk stored and published; the next
        poll stores and publishes the rest."""
        stats = IngestStats()
        for start in range(0, len(papers), PUBLISH_CHUNK):
            chunk = papers[start : start + PUBLISH_CHUNK]
            async with self.engine.begin() as conn:
                fresh = await repository.upsert_papers(conn, chunk, now=self.clock())
            await self._publish(fresh)
            metrics.SEEN.inc(len(chunk))
            metrics.PUBLISHED.inc(len(fresh))
            stats.add(IngestStats(seen=len(chunk), published=len(fresh)))
        return stats

    async def ingest_stream(self, papers: Iterable[Paper], chunk: int = 1000) -> IngestStats:
        """Backfill from a large iterable (the Kaggle snapshot) in bounded chunks."""
        total = IngestStats()
        iterator = iter(papers)
        while batch := list(islice(iterator, chunk)):
            total.add(await self.ingest(batch))
            log.info("ingested %d papers so far, %d published", total.seen, total.published)
        return total

    async def delete(self, arxiv_ids: Sequence[str]) -> IngestStats:
        """Record arXiv's deletion of these papers (see ingest.oai_sets)."""
        if not arxiv_ids:
            return IngestStats()
        async with self.engine.begin() as conn:
            deleted = await repository.mark_deleted(conn, arxiv_ids, now=self.clock())
        if deleted:
            log.info("%d stored papers deleted by arXiv", deleted)
            metrics.DELETED.inc(deleted)
        return IngestStats(deleted=deleted)

    async def checkpoint(self, key: str) -> str | None:
        """Where the feed ``key`` left off (None: never harvested)."""
        async with self.engine.connect() as conn:
            return await repository.get_checkpoint(conn, key)

    async def save_checkpoint(self, key: str, value: str) -> None:
        async with self.engine.begin() as conn:
            await repository.set_checkpoint(conn, key, value, now=self.clock())

    async def republish_unlabelled(self) -> int:
        """Publish again what the stream lost (see the module docstring); returns how many."""
        now = self.clock()
        grace = timedelta(seconds=self.settings.republish_grace_s)
        async with self.engine.connect() as conn:
            if await repository.promoted_model(conn) is None:
                return 0  # no worker can label anything yet
            last = await repository.last_labelled_at(conn)
            waited = grace * self._backoff
            if last is not None and now - last < waited:
                if last > self._last_republish_at:
                    self._backoff = 1  # labels flow again
                return 0  # the worker is busy: unlabelled papers are queued, not lost
            stale = await repository.papers_needing_labels(
                conn, model_version=None, published_before=now - waited, limit=5000
            )
        if stale:
            log.warning(
                "republishing %d papers the stream lost (no label since %s)",
                len(stale), last.isoformat() if last else "ever",
            )  # fmt: skip
            await self._publish(stale)
            metrics.REPUBLISHED.inc(len(stale))
            self._last_republish_at = now
            self._backoff = min(self._backoff * 2, REPUBLISH_BACKOFF_MAX)
        return len(stale)

    async def republish_lost(self) -> int:
        """After the broker lost its topics: publish at once every stored paper whose current
        version has no label, without waiting for the grace or an idle stream (they are lost
        for certain, not queued). Returns how many."""
        total, cutoff = 0, self.clock()
        while True:
            async with self.engine.connect() as conn:
                lost = await repository.papers_needing_labels(
                    conn, model_version=None, published_before=cutoff, limit=5000
                )
            if not lost:
                return total
            await self._publish(lost)  # published_at >= cutoff now: the next page skips them
            metrics.REPUBLISHED.inc(len(lost))
            total += len(lost)

    async def _publish(self, papers: Sequence[Paper]) -> None:
        if not papers:
            return
        topic = self.settings.topic_papers
        for paper in papers:
            await self.producer.send(topic, key=paper.arxiv_id, value=encode(paper))
        await self.producer.flush()
        async with self.engine.begin() as conn:
            await repository.mark_published(conn, [p.arxiv_id for p in papers], now=self.clock())


async def run_forever(
    poll: Callable[[], Awaitable[IngestStats]],
    ingester: Republisher,
    *,
    interval_s: float,
    republish_every_s: float,
    sleep: Sleep = asyncio.sleep,
    rounds: int | None = None,
) -> None:
    """Poll the feed every ``interval_s`` and republish unlabelled papers in between.
    A failed poll (feed down, malformed response) or a database outage is logged and
    retried next round; nothing was marked published, so nothing is lost."""
    elapsed_since_poll = interval_s  # poll at once on start
    done = 0
    while rounds is None or done < rounds:
        if elapsed_since_poll >= interval_s:
            elapsed_since_poll = 0.0
            try:
                stats = await poll()
                log.info("poll: %d papers seen, %d published", stats.seen, stats.published)
            except (FeedError, StorageError) as exc:
                metrics.POLL_FAILURES.inc()
                log.error("poll failed, will retry next round: %s", exc)
            done += 1
        try:
            await ingester.republish_unlabelled()
        except StorageError as exc:
            log.error("republish skipped this round: %s", exc)
        step = min(republish_every_s, interval_s)
        await sleep(step)
        elapsed_since_poll += step
