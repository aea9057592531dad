"""What one ingest run reads, and the run itself: a feed polled once or in a loop (RSS, an
OAI-PMH harvest, or a saved response replayed), or a Kaggle snapshot backfilled. The
``ingest`` command and ``up``'s ingester child are thin callers of ``run_ingest``."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from broker.client import ensure_topics, producer
from core.clock import utc_now
from core.errors import FetchError
from core.metrics_server import serve_metrics
from core.schemas import Paper
from core.settings import Settings
from db.engine import create_async_engine_for
from ingest.oai_sets import OAIRequest
from ingest.service import Ingester, IngestStats, run_forever

Poll = Callable[[], Awaitable[IngestStats]]


@dataclass(frozen=True)
class FeedSource:
    kind: Literal["rss", "oai"]
    replay: Path | None = None
    """A saved response to ingest instead of the network."""
    base_url: str | None = None
    """Another endpoint than the configured one (a mirror, a local server in tests)."""
    categories: list[str] | None = None
    """RSS: the feed's categories (None: ``settings.categories``)."""
    oai: OAIRequest | None = None
    """OAI-PMH: sets and dates (None: from settings)."""


@dataclass(frozen=True)
class SnapshotSource:
    path: Path
    max_samples: int | None = None
    since: date | None = None
    until: date | None = None


def read_saved(kind: Literal["rss", "oai"], path: Path) -> tuple[list[Paper], list[str]]:
    """The papers and deleted ids of a saved RSS or OAI-PMH response. Raises one-line errors:
    no such file, over the 50 MB cap of a download, or not a feed of papers (an HTML page,
    an OAI Identify or ListSets answer). The ``ingest`` command calls it before it starts
    anything, and every replay round again (the file may change)."""
    from ingest.http import MAX_RESPONSE_BYTES
    from ingest.oai import parse_oai
    from ingest.rss import parse_rss

    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such feed file", str(path))
    size = path.stat().st_size
    if size > MAX_RESPONSE_BYTES:  # the cap of a download holds for a saved one too
        limit = MAX_RESPONSE_BYTES
        raise FetchError(f"{path}: {size:,} bytes, over the {limit:,}-byte limit of a feed")
    data = path.read_bytes()
    if kind == "rss":
        return parse_rss(data), []
    page = parse_oai(data)
    return page.papers, page.deleted_ids


def make_poll(settings: Settings, ingester: Ingester, source: FeedSource) -> Poll:
    """The function one polling round calls."""
    from ingest.http import ArxivHttpClient

    replay = source.replay
    if replay is not None:

        async def replay_saved() -> IngestStats:
            papers, deleted = read_saved(source.kind, replay)
            stats = await ingester.ingest(papers)
            if deleted:
                stats.add(await ingester.delete(deleted))
            return stats

        return replay_saved

    if source.kind == "rss":
        from ingest.harvest import fetch_rss

        url = source.base_url or settings.rss_base_url
        categories = source.categories or settings.categories

        async def poll_rss() -> IngestStats:
            async with ArxivHttpClient.from_settings(settings) as client:
                papers = await fetch_rss(client, url, categories)
            return await ingester.ingest(papers)

        return poll_rss

    from ingest.oai_sets import harvest_sets

    request = source.oai or OAIRequest.from_settings(settings, base_url=source.base_url)

    async def poll_oai() -> IngestStats:
        async with ArxivHttpClient.from_settings(settings) as client:
            return await harvest_sets(ingester, client, request)

    return poll_oai


async def run_ingest(
    settings: Settings,
    database_url: str,
    source: FeedSource | SnapshotSource,
    *,
    loop: bool = False,
) -> IngestStats:
    """Ingest ``source`` once (its totals), or with ``loop`` poll it forever, republishing
    what the stream lost in between (ingest.service.run_forever)."""
    await ensure_topics(settings)
    engine = create_async_engine_for(database_url)
    try:
        async with producer(settings) as kafka:
            ingester = Ingester(settings, engine=engine, producer=kafka, clock=utc_now)
            if isinstance(source, SnapshotSource):
                from ingest.snapshot import read_snapshot

                papers = read_snapshot(
                    source.path,
                    max_samples=source.max_samples,
                    since=source.since,
                    until=source.until,
                )
                return await ingester.ingest_stream(papers)
            poll = make_poll(settings, ingester, source)
            if not loop:
                return await poll()
            serve_metrics(settings.ingester_metrics_port, settings.metrics_host)
            await run_forever(
                poll,
                ingester,
                interval_s=settings.poll_interval_s,
                republish_every_s=max(5.0, settings.republish_grace_s / 2),
            )
            return IngestStats()
    finally:
        await engine.dispose()
