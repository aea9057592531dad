"""``arxiv-stream ingest rss|oai|snapshot``: fetch (or replay a saved response) and publish.

``--file`` replays a saved response instead of the network; ``--base-url`` points the live
client elsewhere (a mirror, or a local server in tests). ``--loop`` keeps polling every
``poll_interval_s`` and republishes papers the worker has not labelled yet.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date
from pathlib import Path

from cli.services import services
from core.settings import Settings
from ingest.oai_sets import OAIRequest
from ingest.sources import FeedSource, SnapshotSource, read_saved, run_ingest


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
        parser.set_defaults(handler=_ingest)

    snap = sources.add_parser("snapshot", help="backfill from a Kaggle-format JSON-lines file")
    snap.add_argument("--file", type=Path, required=True)
    snap.add_argument("--max-samples", type=int, default=None)
    snap.add_argument("--since", type=date.fromisoformat, default=None)
    snap.add_argument("--until", type=date.fromisoformat, default=None)
    snap.set_defaults(handler=_ingest, loop=False)


def source_of(args: argparse.Namespace, settings: Settings) -> FeedSource | SnapshotSource:
    if args.source == "snapshot":
        return SnapshotSource(args.file, args.max_samples, args.since, args.until)
    if args.source == "rss":
        categories = args.categories.split("+") if args.categories else None
        return FeedSource("rss", args.file, args.base_url, categories=categories)
    request = OAIRequest.from_settings(
        settings,
        set_spec=args.set_spec,
        from_date=args.from_date,
        until=args.until,
        base_url=args.base_url,
        metadata_prefix=args.metadata_prefix,
    )
    return FeedSource("oai", args.file, args.base_url, oai=request)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    source = source_of(args, settings)
    if isinstance(source, FeedSource) and source.replay is not None:
        read_saved(source.kind, source.replay)  # a bad file is refused before anything starts
    with services(settings, need_kafka=True) as found:
        live = settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap})
        stats = asyncio.run(run_ingest(live, found.database_url, source, loop=args.loop))
    line = f"{stats.seen} papers seen, {stats.published} new or updated published"
    print(line + (f", {stats.deleted} deleted" if stats.deleted else ""))
    return 0
