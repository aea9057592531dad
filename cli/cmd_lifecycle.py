"""``arxiv-stream retrain`` (challenger vs promoted, on the same held-out papers; optionally
on a schedule) and ``arxiv-stream relabel`` (classify stored papers again, through the stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from cli.cmd_models import (
    add_training_options,
    evaluate_version,
    promoted_version,
    register,
    run_trainer,
)
from cli.dbcall import run_db
from cli.services import services
from core.schemas import Paper, encode
from core.settings import Settings
from db import migrate, repository
from training.promotion import decide, parse_duration

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retrain = sub.add_parser(
        "retrain", help="train a challenger; promote it only if it does not regress"
    )
    add_training_options(retrain)
    retrain.add_argument(
        "--margin",
        type=float,
        default=0.005,
        help="largest allowed drop of a guarded metric (absolute, default 0.005)",
    )
    retrain.add_argument(
        "--no-ingested",
        action="store_true",
        help="train on the snapshot only, not also on the papers ingested so far",
    )
    retrain.add_argument("--every", default=None, help="repeat on a schedule, e.g. 7d, 12h")
    retrain.set_defaults(handler=_retrain)

    relabel = sub.add_parser("relabel", help="classify stored papers again with the promoted model")
    relabel.add_argument(
        "--since",
        type=datetime.fromisoformat,
        default=None,
        help="only papers updated since this date (ISO)",
    )
    relabel.set_defaults(handler=_relabel)


async def _all_ingested(conn: Any) -> list[Paper]:
    papers: list[Paper] = []
    async for chunk in repository.papers_for_relabel(conn, since=None, batch=5000):
        papers.extend(chunk)
    return papers


def retrain_once(settings: Settings, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One challenger round. Returns the stored decision."""
    from ingest.snapshot import read_snapshot

    papers = list(read_snapshot(args.snapshot, max_samples=args.max_samples))
    if not args.no_ingested:
        ingested = run_db(database_url, _all_ingested)
        log.info("training on %d snapshot papers + %d ingested papers", len(papers), len(ingested))
        papers.extend(ingested)  # later wins: an ingested paper overrides its snapshot copy
    now = utc_now()
    # max_samples was applied to the snapshot above; the ingested papers all count
    result = run_trainer(settings, papers, args, now=now, max_samples=None)
    incumbent = promoted_version(database_url)
    test_ids = set(result.test_ids)
    held_out = [p for p in papers if p.arxiv_id in test_ids]
    challenger_metrics = evaluate_version(settings, result.version, held_out)
    incumbent_metrics = evaluate_version(settings, incumbent, held_out) if incumbent else None
    decision = decide(challenger_metrics, incumbent_metrics, margin=args.margin)
    decision.update(
        challenger=result.version,
        incumbent=incumbent,
        held_out=len(held_out),
        decided_at=now.isoformat(),
        challenger_metrics=challenger_metrics,
        incumbent_metrics=incumbent_metrics,
    )
    register(settings, database_url, result, now=now, force_promote=False, allow_first=False)
    if decision["promote"]:
        run_db(
            database_url,
            lambda conn: repository.promote_model(conn, result.version, now=now, decision=decision),
        )
    else:
        run_db(
            database_url, lambda conn: repository.record_decision(conn, result.version, decision)
        )
    _print_decision(decision)
    return decision


def _print_decision(decision: dict[str, Any]) -> None:
    verdict = "PROMOTED" if decision["promote"] else "KEPT the incumbent"
    print(
        f"{verdict}: challenger {decision['challenger']} vs incumbent "
        f"{decision['incumbent'] or '(none)'} on {decision['held_out']} held-out papers"
    )
    print(f"reason: {decision['reason']}")
    for name, row in decision["compared"].items():
        print(
            f"  {name:<28} incumbent {row['incumbent']:.4f}  challenger {row['challenger']:.4f}"
            f"  ({row['delta']:+.4f})"
        )


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    every = parse_duration(args.every) if args.every else None
    with services(settings, need_kafka=False) as found:
        migrate.upgrade(found.database_url)
        while True:
            retrain_once(settings, found.database_url, args)
            if every is None:
                return 0
            log.info("next retrain in %s", every)
            time.sleep(every.total_seconds())


async def publish_for_relabel(settings: Settings, database_url: str, since: datetime | None) -> int:
    from broker.client import ensure_topics, producer
    from db.engine import create_async_engine_for

    await ensure_topics(settings)
    engine = create_async_engine_for(database_url)
    sent = 0
    try:
        async with producer(settings) as kafka, engine.connect() as conn:
            async for chunk in repository.papers_for_relabel(conn, since=since, batch=1000):
                for paper in chunk:
                    relabel = paper.model_copy(update={"source": "relabel"})
                    await kafka.send(
                        settings.topic_papers, key=paper.arxiv_id, value=encode(relabel)
                    )
                await kafka.flush()
                sent += len(chunk)
                log.info("queued %d papers for relabelling", sent)
    finally:
        await engine.dispose()
    return sent


def _relabel(args: argparse.Namespace, settings: Settings) -> int:
    since = (
        args.since.replace(tzinfo=UTC) if args.since and args.since.tzinfo is None else (args.since)
    )
    with services(settings, need_kafka=True) as found:
        live = settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap})
        version = promoted_version(found.database_url)
        sent = asyncio.run(publish_for_relabel(live, found.database_url, since))
    print(json.dumps({"queued": sent, "model_version": version}))
    return 0
