"""Recovery after the embedded broker lost everything (Tansu keeps topics in memory): what
``up`` does once it has started the broker again on the same port.

1. the topics are created again (ingest's ensure_topics);
2. every label is marked unpublished, so the workers' resend timer rebuilds
   ``classified-papers`` from PostgreSQL (at-least-once: consumers de-duplicate on
   (arxiv_id, version, model_version));
3. every paper without a label for its current version is published again at once: it
   was in the lost ``arxiv-papers`` topic.
The supervisor restarts the workers around it, so they join the new broker from scratch
(the committed offsets are gone too) instead of resuming at offsets past the new log's end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from broker.client import ensure_topics, producer
from core.clock import utc_now
from core.settings import Settings
from db import repository
from db.engine import create_async_engine_for
from ingest.service import Ingester

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    labels_to_resend: int
    papers_republished: int


async def recover_after_broker_loss(settings: Settings, database_url: str) -> Recovered:
    await ensure_topics(settings)
    engine = create_async_engine_for(database_url)
    try:
        async with engine.begin() as conn:
            labels = await repository.forget_label_publication(conn)
        async with producer(settings) as kafka:
            ingester = Ingester(settings, engine=engine, producer=kafka, clock=utc_now)
            papers = await ingester.republish_lost()
    finally:
        await engine.dispose()
    log.warning(
        "after the broker restart: %d papers republished, %d labels to re-send", papers, labels
    )
    return Recovered(labels, papers)
