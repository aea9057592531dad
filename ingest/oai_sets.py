"""The OAI-PMH harvest as the ingester runs it: one ListRecords list per set, each from its
own checkpoint, over one polite client; pages are stored and published as they come, and
deletions are recorded.

Checkpoints (table ``ingest_checkpoints``, key ``oai:<metadataPrefix>:<set or *>``) move
only when a set's list was read to its end: arXiv's resumption tokens expire, and a broken
harvest restarts from the last completed one (ingest.harvest explains the date it moves to).
An explicit ``from_date`` overrides the checkpoint; with neither, the harvest starts from
yesterday (the last announcement).

Deleted records (``status="deleted"``) mark stored papers deleted (db.repository.mark_deleted):
they leave ``latest_labels``, and are never republished or relabelled; their rows and labels
stay as history, and a later, newer version brings the paper back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from core.settings import Settings
from ingest.harvest import Fetcher, OAIHarvest
from ingest.service import Ingester, IngestStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OAIRequest:
    """What to harvest; ``from_settings`` fills what the caller leaves out."""

    base_url: str
    metadata_prefix: str
    sets: list[str | None] = field(default_factory=lambda: [None])
    """Set specs (e.g. ``cs:cs:AI``); ``None`` is the whole archive."""
    from_date: date | None = None
    """Overrides every set's checkpoint."""
    until: date | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        set_spec: str | None = None,
        from_date: date | None = None,
        until: date | None = None,
        base_url: str | None = None,
        metadata_prefix: str | None = None,
    ) -> OAIRequest:
        """``set_spec`` if given, else the configured ``oai_sets``, else the whole archive."""
        sets: list[str | None] = [set_spec] if set_spec else [*settings.oai_sets] or [None]
        return cls(
            base_url=base_url or settings.oai_base_url,
            metadata_prefix=metadata_prefix or settings.oai_metadata_prefix,
            sets=sets,
            from_date=from_date,
            until=until,
        )


def checkpoint_key(metadata_prefix: str, set_spec: str | None) -> str:
    return f"oai:{metadata_prefix}:{set_spec or '*'}"


def default_from(now: datetime) -> date:
    """With no checkpoint, start from yesterday: the last announcement is what users expect."""
    return (now - timedelta(days=1)).date()


async def harvest_sets(ingester: Ingester, client: Fetcher, request: OAIRequest) -> IngestStats:
    """Every set of ``request`` in turn; returns the totals."""
    total = IngestStats()
    for set_spec in request.sets:
        total.add(await harvest_set(ingester, client, request, set_spec))
    return total


async def harvest_set(
    ingester: Ingester, client: Fetcher, request: OAIRequest, set_spec: str | None
) -> IngestStats:
    """One set's list from its checkpoint to the end; the checkpoint moves only then."""
    key = checkpoint_key(request.metadata_prefix, set_spec)
    saved = await ingester.checkpoint(key)
    harvest = OAIHarvest(
        client,
        request.base_url,
        metadata_prefix=request.metadata_prefix,
        set_spec=set_spec,
        from_date=request.from_date
        or (date.fromisoformat(saved) if saved else default_from(ingester.clock())),
        until=request.until,
    )
    total = IngestStats()
    async for page in harvest.pages():
        total.add(await ingester.ingest(page.papers))
        total.add(await ingester.delete(page.deleted_ids))
    if harvest.checkpoint is not None:
        await ingester.save_checkpoint(key, harvest.checkpoint.isoformat())
        log.info("OAI checkpoint %s -> %s", key, harvest.checkpoint)
    return total
