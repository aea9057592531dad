"""One challenger round: train on the snapshot (and what was ingested), compare with the
promoted model on papers neither trained on, register, and promote only if it does not
regress (training.promotion). The ``retrain`` use case."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.schemas import Paper
from core.settings import Settings
from db import repository
from db.engine import run_sync
from lifecycle.evaluate import evaluate_version
from lifecycle.registry import Registry
from lifecycle.train import DEFAULTS, TrainOptions, train

log = logging.getLogger(__name__)

HELD_OUT_RULE = "the challenger's test split minus papers the incumbent trained on"


@dataclass(frozen=True)
class RetrainOptions:
    train: TrainOptions = DEFAULTS
    margin: float = 0.005
    """Largest allowed drop of a guarded metric (absolute)."""
    include_ingested: bool = True
    """Also train on every paper ingested so far (an ingested copy overrides the snapshot's)."""
    cold: bool = False
    """Choose the heads afresh (the selection grid) instead of refitting the incumbent's
    choices from its weights (training.warm, which also falls back to cold by itself)."""


async def _all_ingested(conn: Any) -> list[Paper]:
    papers: list[Paper] = []
    async for chunk in repository.papers_for_relabel(conn, since=None, batch=5000):
        papers.extend(chunk)
    return papers


def gather_papers(
    registry: Registry, snapshot: Path | list[Path], options: RetrainOptions
) -> list[Paper]:
    """One copy per paper: the snapshot's (at most ``max_samples``), then the ingested ones."""
    from ingest.snapshot import read_snapshot

    by_id = {p.arxiv_id: p for p in read_snapshot(snapshot, max_samples=options.train.max_samples)}
    if options.include_ingested:
        ingested = run_sync(registry.database_url, _all_ingested)
        new = sum(p.arxiv_id not in by_id for p in ingested)
        log.info(
            "training on %d snapshot papers + %d ingested papers (%d not in the snapshot)",
            len(by_id), len(ingested), new,
        )  # fmt: skip
        by_id.update((p.arxiv_id, p) for p in ingested)
    return list(by_id.values())


def retrain_once(
    settings: Settings,
    registry: Registry,
    snapshot: Path | list[Path],
    options: RetrainOptions,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Train a challenger, judge it against the incumbent, record the decision; returns it."""
    from training.holdout import in_holdout
    from training.promotion import decide

    started = time.perf_counter()
    papers = gather_papers(registry, snapshot, options)
    incumbent = registry.promoted_version()
    warm_from = registry.path(incumbent) if incumbent and not options.cold else None
    # max_samples was applied to the snapshot; every ingested paper counts
    train_options = replace(options.train, max_samples=None, warm_from=warm_from)
    result = train(settings, papers, train_options, now=now)
    seen_by_incumbent = registry.trained_ids(incumbent) if incumbent else set()
    test_ids = set(result.test_ids) - seen_by_incumbent
    held_out = [p for p in papers if p.arxiv_id in test_ids]
    if not held_out:
        raise ConfigError(
            f"no held-out paper of challenger {result.version} is unseen by {incumbent}: "
            "nothing to compare on; train on more papers"
        )
    challenger_metrics = evaluate_version(registry, result.version, held_out)
    incumbent_metrics = evaluate_version(registry, incumbent, held_out) if incumbent else None
    decision = decide(challenger_metrics, incumbent_metrics, margin=options.margin)
    decision.update(
        challenger=result.version,
        incumbent=incumbent,
        warm_from=result.metrics["selection"].get("warm_start", {}).get("from"),
        held_out=len(held_out),
        held_out_rule=HELD_OUT_RULE,
        decided_at=now.isoformat(),
        challenger_metrics=challenger_metrics,
        incumbent_metrics=incumbent_metrics,
    )
    if options.train.exclude_holdout:
        holdout = [p for p in papers if in_holdout(p.arxiv_id)]
        decision["holdout_metrics"] = evaluate_version(registry, result.version, holdout)
    # reading, training, both evaluations; not the process's start-up, but in a fresh
    # process the lazy imports inside the run (``retrain --every`` pays those once)
    decision["seconds"] = round(time.perf_counter() - started, 2)
    registry.register(result, now=now, promote=False)
    if decision["promote"]:
        registry.promote(result.version, now=now, decision=decision)
    else:
        registry.record_decision(result.version, decision)
    return decision
