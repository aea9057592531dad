"""The classification agent: take a batch, classify it off the loop, write, publish.

Order per batch (at-least-once, no duplicates downstream of PostgreSQL):
 1. the model holder hands out the current model (a promotion swaps it here, between batches);
 2. ``classify_batch`` runs in a thread (long CPU work on the loop stops heartbeats);
 3. one transaction upserts the batch's papers and labels (idempotent, keyed);
 4. one message per paper to ``classified-papers``, dead letters to the dead-letter topic.
If PostgreSQL is down, step 3 retries with backoff and the batch is not acknowledged until
it succeeds, so nothing is lost; Kafka offsets are committed only after the agent moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

import faust
from sqlalchemy.ext.asyncio import AsyncEngine

from core.schemas import ClassifiedPaper, Paper, encode
from core.settings import Settings
from db import repository
from stream.model_holder import ModelHolder
from stream.pipeline import RawMessage, classify_batch, label_rows

log = logging.getLogger(__name__)

DB_RETRY_MAX_S = 30.0


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


async def write_batch(
    engine: AsyncEngine, classified: list[ClassifiedPaper], papers: list[Paper], now: datetime
) -> None:
    """Papers (so labels never miss their parent row) and labels in one transaction,
    retried until the database answers."""
    delay = 1.0
    while True:
        try:
            async with engine.begin() as conn:
                await repository.upsert_papers(conn, papers, now=now)
                await repository.upsert_labels(conn, label_rows(classified))
            return
        except Exception as exc:  # outage: keep the batch, wait, try again
            log.error("database write failed (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, DB_RETRY_MAX_S)


def register_classifier(
    app: faust.App,
    settings: Settings,
    *,
    holder: ModelHolder,
    engine: AsyncEngine,
    clock: Callable[[], datetime],
) -> faust.types.AgentT:
    papers_topic = app.topic(settings.topic_papers, key_serializer="raw", value_serializer="raw")
    classified_topic = app.topic(
        settings.topic_classified, key_serializer="raw", value_serializer="raw"
    )
    dead_letter_topic = app.topic(
        settings.topic_dead_letter, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(papers_topic, name="classify-papers")
    async def classify(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(  # type: ignore[attr-defined]  # missing from StreamT
            settings.batch_size, within=settings.batch_within_s
        ):
            messages = [RawMessage(_as_text(e.key), _as_bytes(e.value)) for e in events]
            model = await holder.current()
            result = await loop.run_in_executor(
                None,
                partial(
                    classify_batch,
                    messages,
                    model,
                    topic=settings.topic_papers,
                    top_k=settings.top_k,
                    clock=clock,
                ),
            )
            if result.classified:
                await write_batch(engine, result.classified, result.papers, clock())
            for message in result.classified:
                await classified_topic.send(key=message.arxiv_id.encode(), value=encode(message))
            for dead in result.dead_letters:
                log.warning("dead-lettered a message (%s): %s", dead.reason, dead.error[:200])
                await dead_letter_topic.send(
                    key=dead.key.encode() if dead.key else None, value=encode(dead)
                )
            log.info(
                "batch: %d classified with %s, %d dead-lettered",
                len(result.classified),
                model.version,
                len(result.dead_letters),
            )

    return classify
