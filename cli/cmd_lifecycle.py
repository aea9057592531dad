"""``arxiv-stream retrain`` (challenger vs promoted on the same held-out papers; optionally
on a schedule) and ``arxiv-stream relabel`` (classify stored papers again, through the
stream): parse, call lifecycle/, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from cli.argtypes import duration
from cli.cmd_models import add_training_options, train_options
from cli.services import services
from core.clock import utc_now
from core.settings import Settings
from db import migrate
from lifecycle.registry import Registry
from lifecycle.retrain import RetrainOptions, retrain_once

log = logging.getLogger(__name__)

RETRAIN_DEFAULTS = RetrainOptions()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retrain = sub.add_parser(
        "retrain", help="train a challenger; promote it only if it does not regress"
    )
    add_training_options(retrain)
    retrain.add_argument(
        "--margin",
        type=float,
        default=RETRAIN_DEFAULTS.margin,
        help="largest allowed drop of a guarded metric "
        f"(absolute, default {RETRAIN_DEFAULTS.margin})",
    )
    retrain.add_argument(
        "--no-ingested",
        action="store_true",
        help="train on the snapshot only, not also on the papers ingested so far",
    )
    retrain.add_argument(
        "--cold",
        action="store_true",
        help="choose the heads afresh (the full selection grid) instead of refitting the "
        "promoted model's choices from its weights",
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


def print_decision(decision: dict[str, Any]) -> None:
    verdict = "PROMOTED" if decision["promote"] else "KEPT the incumbent"
    warm_from = decision.get("warm_from")
    how = "cold (the selection grid)"
    if warm_from:
        how = f"warm (refitted {warm_from}'s heads from its weights)"
    print(f"retrain: {how}, {decision.get('seconds', 0):.1f} s")
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
    options = RetrainOptions(
        train=train_options(args),
        margin=args.margin,
        include_ingested=not args.no_ingested,
        cold=args.cold,
    )
    options.train.check()
    from ingest.snapshot import snapshot_files

    snapshot_files(args.snapshot)  # a missing file is said before anything starts
    with services(settings, need_kafka=False) as found:
        migrate.upgrade(found.database_url)
        registry = Registry(settings, found.database_url)
        while True:
            decision = retrain_once(settings, registry, args.snapshot, options, now=utc_now())
            print_decision(decision)
            if args.every is None:
                return 0
            log.info("next retrain in %s", args.every)
            time.sleep(args.every.total_seconds())


def _relabel(args: argparse.Namespace, settings: Settings) -> int:
    from lifecycle.relabel import publish_for_relabel

    since = args.since
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with services(settings, need_kafka=True) as found:
        live = settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap})
        version = Registry(settings, found.database_url).promoted_version()
        sent = asyncio.run(publish_for_relabel(live, found.database_url, since=since))
    print(json.dumps({"queued": sent, "model_version": version}))
    return 0
