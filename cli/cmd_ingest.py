"""``arxiv-stream ingest rss|oai|snapshot``: fetch (or replay a saved response) and publish.

``--file`` replays a saved response instead of the network; ``--base-url`` points the live
client elsewhere (a mirror, or a local server in tests). ``--loop`` keeps polling every
``poll_interval_s`` and republishes papers the worker has not labelled yet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from broker.client import ensure_topics, producer
from cli.services import services
from core.settings import Settings
from db import repository
from db.engine import create_async_engine_for
from ingest.service import (
    Ingester,
    IngestStats,
    default_oai_from,
    oai_checkpoint_key,
    run_forever,
)

if TYPE_CHECKING:
    from ingest.http import ArxivHttpClient

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser("ingest", help="fetch papers and publish them to Kafka")
    sources = ingest.add_subparsers(dest="source", required=True)

    rss = sources.add_parser("rss", help="rss.arxiv.org feed (the daily announcement)")
    rss.add_argument("--categories", default=None, help="e.g. cs+math (default: settings)")
    oai = sources.add_parser("oai", help="OAI-PMH ListRecords since the last checkpoint")
    oai.add_argument("--set", dest="set_spec", default=None, help="e.g. cs:cs:AI, physics:hep-th")
    oai.add_argument("--from", dest="from_date", type=date.fromisoformat, default=None)
    oai.add_argument("--until", type=date.fromisoformat, default=None)
    oai.add_argument("--metadata-prefix", choices=["arXiv", "arXivRaw"], default=None)
    for parser in (rss, oai):
        parser.add_argument("--file", type=Path, default=None, help="replay a saved response")
        parser.add_argument("--base-url", default=None, help="override the arXiv endpoint")
        parser.add_argument("--loop", action="store_true", help="keep polling (and republishing)")
        parser.set_defaults(handler=_ingest_feed)

    snap = sources.add_parser("snapshot", help="backfill from a Kaggle-format JSON-lines file")
    snap.add_argument("--file", type=Path, required=True)
    snap.add_argument("--max-samples", type=int, default=None)
    snap.add_argument("--since", type=date.fromisoformat, default=None)
    snap.add_argument("--until", type=date.fromisoformat, default=None)
    snap.set_defaults(handler=_ingest_snapshot)


def make_poll(
    args: argparse.Namespace, settings: Settings, ingester: Ingester
) -> Callable[[], Awaitable[IngestStats]]:
    """The function one polling round calls, for the chosen source."""
    from ingest.http import ArxivHttpClient
    from ingest.oai import parse_oai
    from ingest.rss import parse_rss

    if args.file is not None:
        parse = parse_rss if args.source == "rss" else (lambda data: parse_oai(data).papers)

        async def replay() -> IngestStats:
            return await ingester.ingest(parse(args.file.read_bytes()))

        return replay

    if args.source == "rss":
        from ingest.harvest import fetch_rss

        categories = args.categories.split("+") if args.categories else settings.categories

        async def poll_rss() -> IngestStats:
            async with ArxivHttpClient.from_settings(settings) as client:
                papers = await fetch_rss(client, args.base_url or settings.rss_base_url, categories)
            return await ingester.ingest(papers)

        return poll_rss

    async def poll_oai() -> IngestStats:
        return await harvest_oai_once(args, settings, ingester)

    return poll_oai


async def harvest_oai_once(
    args: argparse.Namespace, settings: Settings, ingester: Ingester
) -> IngestStats:
    """One ListRecords harvest per configured set (``--set``, else ``oai_sets``, else all),
    each from its own checkpoint, over one polite client."""
    from ingest.http import ArxivHttpClient

    sets: list[str | None] = [args.set_spec] if args.set_spec else [*settings.oai_sets] or [None]
    total = IngestStats()
    async with ArxivHttpClient.from_settings(settings) as client:
        for set_spec in sets:
            total.add(await _harvest_set(args, settings, ingester, client, set_spec))
    return total


async def _harvest_set(
    args: argparse.Namespace,
    settings: Settings,
    ingester: Ingester,
    client: ArxivHttpClient,
    set_spec: str | None,
) -> IngestStats:
    """The checkpoint moves only when the harvest completed: arXiv's resumption tokens
    expire, and a broken harvest restarts from the last completed one."""
    from ingest.harvest import OAIHarvest

    key = oai_checkpoint_key(settings, set_spec)
    async with ingester.engine.connect() as conn:
        saved = await repository.get_checkpoint(conn, key)
    from_date = args.from_date or (date.fromisoformat(saved) if saved else None)
    harvest = OAIHarvest(
        client,
        args.base_url or settings.oai_base_url,
        metadata_prefix=args.metadata_prefix or settings.oai_metadata_prefix,
        set_spec=set_spec,
        from_date=from_date or default_oai_from(utc_now()),
        until=args.until,
    )
    total = IngestStats()
    async for page in harvest.pages():
        total.add(await ingester.ingest(page.papers))
    if harvest.checkpoint is not None:
        async with ingester.engine.begin() as conn:
            await repository.set_checkpoint(
                conn, key, harvest.checkpoint.isoformat(), now=utc_now()
            )
        log.info("OAI checkpoint %s -> %s", key, harvest.checkpoint)
    return total


async def _run(args: argparse.Namespace, settings: Settings, database_url: str) -> IngestStats:
    await ensure_topics(settings)
    engine = create_async_engine_for(database_url)
    try:
        async with producer(settings) as kafka:
            ingester = Ingester(settings, engine=engine, producer=kafka, clock=utc_now)
            if args.source == "snapshot":
                from ingest.snapshot import read_snapshot

                papers = read_snapshot(
                    args.file, max_samples=args.max_samples, since=args.since, until=args.until
                )
                return await ingester.ingest_stream(papers)
            poll = make_poll(args, settings, ingester)
            if not args.loop:
                return await poll()
            await run_forever(
                poll,
                ingester,
                interval_s=settings.poll_interval_s,
                republish_every_s=max(5.0, settings.republish_grace_s / 2),
            )
            return IngestStats()
    finally:
        await engine.dispose()


def _ingest_feed(args: argparse.Namespace, settings: Settings) -> int:
    with services(settings, need_kafka=True) as found:
        live = settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap})
        stats = asyncio.run(_run(args, live, found.database_url))
    print(f"{stats.seen} papers seen, {stats.published} new or updated published")
    return 0


_ingest_snapshot = _ingest_feed
