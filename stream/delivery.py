"""Making ``classified-papers`` whole: labels whose message never reached the broker (a send
failed, the broker was lost, the worker died between write and send) are sent again.

Every label row records ``published_at``; the agent sets it once the broker acknowledged the
message. ``resend_unpublished`` (a worker timer, every ``resend_interval_s``) claims the
oldest unpublished labels older than ``resend_after_s`` with ``FOR UPDATE SKIP LOCKED``
(two workers never send the same row), rebuilds each message from PostgreSQL, sends it,
waits for the acknowledgement and marks it. Delivery is at-least-once: a consumer that must
not count a label twice de-duplicates on (arxiv_id, version, model_version).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from core.schemas import ClassifiedPaper, ScoredLabel, encode
from db import repository
from db.repository import UnsentLabel
from stream.agent import Send, deliver, label_key

log = logging.getLogger(__name__)


def classified_from_row(unsent: UnsentLabel) -> ClassifiedPaper:
    """The message the worker sent (or should have) for a stored label."""
    label = unsent.label
    top = label.top_k or {}
    return ClassifiedPaper(
        arxiv_id=label.arxiv_id,
        version=label.version,
        title=unsent.title,
        categories=unsent.categories,
        domain=ScoredLabel(label=label.domain, score=label.domain_score),
        category=ScoredLabel(label=label.category, score=label.category_score),
        domain_top_k=[ScoredLabel(**s) for s in top.get("domain", [])],
        category_top_k=[ScoredLabel(**s) for s in top.get("category", [])],
        agrees_with_declared=label.agrees_with_declared,
        model_version=label.model_version,
        classified_at=label.labelled_at,
    )


async def resend_unpublished(
    engine: AsyncEngine, send: Send, *, now: datetime, older_than_s: float, limit: int = 500
) -> int:
    """One round; returns how many messages were delivered."""
    async with engine.begin() as conn:
        claimed = await repository.claim_unpublished_labels(
            conn, labelled_before=now - timedelta(seconds=older_than_s), limit=limit
        )
        if not claimed:
            return 0
        messages = [classified_from_row(u) for u in claimed]
        delivered = await deliver(send, [(m.arxiv_id.encode(), encode(m)) for m in messages])
        keys = [label_key(m) for m, ok in zip(messages, delivered, strict=True) if ok]
        await repository.mark_labels_published(conn, keys, now=now)
    log.info("re-sent %d of %d unpublished labels", len(keys), len(claimed))
    return len(keys)
