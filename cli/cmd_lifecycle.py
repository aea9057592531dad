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

from cli.argtypes import duration
from cli.cmd_models import (
    add_training_options,
    evaluate_version,
    promoted_version,
    register,
    run_trainer,
)
from cli.dbcall import run_db
from cli.services import services
from core.errors import ConfigError
from core.schemas import Paper, encode
from core.settings import Settings
from db import migrate, repository
from training.holdout import in_holdout
from training.promotion import decide

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
    retrain.add_argument(
        "--every", type=duration, default=None, help="repeat on a schedule, e.g. 7d, 12h"
    )
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

    by_id = {p.arxiv_id: p for p in read_snapshot(args.snapshot, max_samples=args.max_samples)}
    if not args.no_ingested:
        ingested = run_db(database_url, _all_ingested)
        new = sum(p.arxiv_id not in by_id for p in ingested)
        log.info(
            "training on %d snapshot papers + %d ingested papers (%d not in the snapshot)",
            len(by_id), len(ingested), new,
        )  # fmt: skip
        by_id.update((p.arxiv_id, p) for p in ingested)  # an ingested copy overrides
    papers = list(by_id.values())  # one copy per paper: nothing counted twice
    now = utc_now()
    # max_samples was applied to the snapshot above; the ingested papers all count
    result = run_trainer(settings, papers, args, now=now, max_samples=None)
    incumbent = promoted_version(database_url)
    seen_by_incumbent = trained_ids(settings, incumbent) if incumbent else set()
    test_ids = set(result.test_ids) - seen_by_incumbent
    held_out = [p for p in papers if p.arxiv_id in test_ids]
    if not held_out:
        raise ConfigError(
            f"no held-out paper of challenger {result.version} is unseen by {incumbent}: "
            "nothing to compare on; train on more papers"
        )
    challenger_metrics = evaluate_version(settings, result.version, held_out)
    incumbent_metrics = evaluate_version(settings, incumbent, held_out) if incumbent else None
    decision = decide(challenger_metrics, incumbent_metrics, margin=args.margin)
    decision.update(
        challenger=result.version,
        incumbent=incumbent,
        held_out=len(held_out),
        held_out_rule="the challenger's test split minus papers the incumbent trained on",
        decided_at=now.isoformat(),
        challenger_metrics=challenger_metrics,
        incumbent_metrics=incumbent_metrics,
    )
    if getattr(args, "exclude_holdout", False):
        holdout = [p for p in papers if in_holdout(p.arxiv_id)]
        decision["holdout_metrics"] = evaluate_version(settings, result.version, holdout)
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


def trained_ids(settings: Settings, version: str) -> set[str]:
    """arXiv ids ``version`` was trained on: its split.json's train_ids, plus val (used for
    choices). Bundles from before train_ids was recorded: only val and test are known, so
    nothing can be excluded beyond them (logged)."""
    from models.registry import version_dir

    path = version_dir(settings.models_dir, version) / "split.json"
    if not path.is_file():
        return set()
    split = json.loads(path.read_text())
    if "train_ids" not in split:
        log.warning("model %s records no train_ids: comparison may include its training", version)
    return set(split.get("train_ids", [])) | set(split.get("val_ids", []))


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
    holdout = decision.get("holdout_metrics")
    if holdout:
        cat = holdout["category"]
        print(
            f"challenger on the fixed holdout ({holdout['n']} papers never trained on): "
            f"domain acc {holdout['domain']['accuracy']:.4f}, category acc "
            f"{cat['accuracy']:.4f}, precision@1 {cat['precision_at_1']:.4f}, "
            f"top-5 micro recall {cat['top5_micro_recall']:.4f}"
        )


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    every = args.every
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
