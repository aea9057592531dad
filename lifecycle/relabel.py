"""Send stored papers through the stream again, to be labelled by the promoted model: the
``relabel`` use case. Papers arXiv deleted are left out (db.repository.papers_for_relabel)."""

from __future__ import annotations

import logging
from datetime import datetime

from broker.client import ensure_topics, producer
from core.schemas import encode
from core.settings import Settings
from db import repository
from db.engine import create_async_engine_for

log = logging.getLogger(__name__)


async def publish_for_relabel(
    settings: Settings, database_url: str, *, since: datetime | None
) -> int:
    """Publish every stored paper (updated at or after ``since``) to the papers topic with
    source ``relabel``; returns how many. Keyed upserts make a second run harmless."""
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
