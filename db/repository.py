"""Repository functions: every read and write the app makes, one statement (or a few in
the caller's transaction) per batch.

Each takes ``conn`` (an ``AsyncConnection``) first; the caller owns the transaction:

    async with engine.begin() as conn:
        fresh = await repository.upsert_papers(conn, papers, now=clock())

Writes are idempotent upserts keyed on the canonical arXiv id, so at-least-once delivery
never duplicates. The clock is injected (``now``); datetimes must be timezone-aware.
Unreachable database: ``StorageError``, raised by the engine (see db/engine.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, any_, func, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

from core.errors import ModelNotFoundError
from core.schemas import DeadLetter, Paper, newest_per_id
from db import tables as t

# Serialises promotions: two at once would both demote, then collide on the unique index.
_PROMOTION_LOCK = 7_130_521_002


@dataclass(frozen=True)
class LabelRow:
    """One model's labels for one version of one paper (a row of ``labels``)."""

    arxiv_id: str
    version: int
    model_version: str
    domain: str
    domain_score: float
    category: str
    category_score: float
    top_k: dict[str, Any]
    """``{"domain": [{"label": ..., "score": ...}], "category": [...]}``"""
    agrees_with_declared: bool | None
    labelled_at: datetime


@dataclass(frozen=True)
class ModelRow:
    """A registered model version (a row of ``models``)."""

    version: str
    created_at: datetime
    path: str
    """Directory name under the models dir."""
    embedder: str
    metrics: dict[str, Any]
    promoted: bool
    promoted_at: datetime | None
    decision: dict[str, Any] | None
    """The retrain decision that judged this version, with both sets of numbers."""


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
    return value


def _text_array(values: Iterable[str]) -> Any:
    """A single ``text[]`` parameter: ``= ANY(:ids)`` stays one bind for any batch size."""
    return literal(list(values), ARRAY(Text))


# --- papers -----------------------------------------------------------------------------

_PAPER_FIELDS = (
    "version",
    "title",
    "abstract",
    "authors",
    "categories",
    "primary_category",
    "submitted",
    "updated",
    "doi",
    "journal_ref",
    "source",
    "announce_type",
)


def _paper_row(paper: Paper, now: datetime) -> dict[str, Any]:
    row = {name: getattr(paper, name) for name in _PAPER_FIELDS}
    row["categories"] = list(paper.categories)
    row |= {
        "arxiv_id": paper.arxiv_id,
        "first_seen_at": now,
        "last_seen_at": now,
        "published_at": None,
        "updated_at": now,
    }
    return row


def _to_paper(row: Row[Any]) -> Paper:
    fields = {name: getattr(row, name) for name in _PAPER_FIELDS if name != "primary_category"}
    return Paper(arxiv_id=row.arxiv_id, **fields)


async def upsert_papers(
    conn: AsyncConnection, papers: Sequence[Paper], *, now: datetime, seen: bool = True
) -> list[Paper]:
    """Store papers; return those that are new or a newer version than stored.

    Those are what the ingester must publish. A version already stored (or older) only
    bumps ``last_seen_at`` (when an ingest listed it: ``seen``; the worker, which stores a
    paper only so its labels have their parent row, passes False and leaves such a row as
    it is). A new row, or a newer version, is written with ``last_seen_at = now`` by any
    caller; a newer version replaces the metadata and clears ``published_at`` (this
    version has not been published yet); ``first_seen_at`` stays.
    """
    now = _aware(now)
    batch = newest_per_id(papers)  # ON CONFLICT cannot touch one row twice
    if not batch:
        return []
    new = insert(t.papers).excluded
    upsert = (
        insert(t.papers)
        .on_conflict_do_update(
            index_elements=[t.papers.c.arxiv_id],
            set_={
                **{name: new[name] for name in _PAPER_FIELDS},
                "last_seen_at": new.last_seen_at,
                "published_at": None,
                "updated_at": new.updated_at,
                "deleted_at": None,  # a newer version than a deletion: the paper is back
            },
            where=new.version > t.papers.c.version,  # only a newer version rewrites the row
        )
        .returning(t.papers.c.arxiv_id)  # rows inserted or rewritten: the ones to publish
    )
    # Rows in id order: concurrent writers (ingester, workers) then lock rows in the same
    # order and cannot deadlock each other.
    ordered = sorted(batch, key=lambda paper: paper.arxiv_id)
    result = await conn.execute(upsert, [_paper_row(paper, now) for paper in ordered])
    fresh = set(result.scalars())
    seen_again = [paper.arxiv_id for paper in batch if paper.arxiv_id not in fresh]
    if seen and seen_again:
        await conn.execute(
            update(t.papers)
            .where(t.papers.c.arxiv_id == any_(_text_array(seen_again)))
            .values(last_seen_at=now)
        )
    return [paper for paper in batch if paper.arxiv_id in fresh]


async def mark_published(conn: AsyncConnection, arxiv_ids: Iterable[str], *, now: datetime) -> int:
    """Record that these papers' current versions were just published; returns rows touched."""
    ids = list(arxiv_ids)
    if not ids:
        return 0
    result = await conn.execute(
        update(t.papers)
        .where(t.papers.c.arxiv_id == any_(_text_array(ids)))
        .values(published_at=_aware(now))
    )
    return result.rowcount


async def mark_deleted(conn: AsyncConnection, arxiv_ids: Iterable[str], *, now: datetime) -> int:
    """Record arXiv's deletion of these papers (OAI ``status="deleted"``); returns how many
    stored, live papers that touched. Rows and labels stay; ``latest_labels``, republishing
    and relabelling leave deleted papers out."""
    ids = sorted(set(arxiv_ids))
    if not ids:
        return 0
    result = await conn.execute(
        update(t.papers)
        .where(t.papers.c.arxiv_id == any_(_text_array(ids)), t.papers.c.deleted_at.is_(None))
        .values(deleted_at=_aware(now), updated_at=_aware(now))
    )
    return result.rowcount


async def get_paper(conn: AsyncConnection, arxiv_id: str) -> Paper | None:
    row = (await conn.execute(select(t.papers).where(t.papers.c.arxiv_id == arxiv_id))).first()
    return _to_paper(row) if row else None


async def papers_needing_labels(
    conn: AsyncConnection, *, model_version: str | None, published_before: datetime, limit: int
) -> list[Paper]:
    """Papers whose current version has no label under ``model_version`` (None: under any
    model) although they were last published (or, never published, first seen) before
    ``published_before``.

    The ingester publishes these again: the embedded broker keeps messages in memory only,
    so a broker restart can lose them. Oldest first.
    """
    last_sent = func.coalesce(t.papers.c.published_at, t.papers.c.first_seen_at)
    same_paper = [
        t.labels.c.arxiv_id == t.papers.c.arxiv_id,
        t.labels.c.version == t.papers.c.version,
    ]
    if model_version is not None:
        same_paper.append(t.labels.c.model_version == model_version)
    labelled = select(t.labels.c.arxiv_id).where(*same_paper).exists()
    stmt = (
        select(t.papers)
        .where(~labelled, last_sent < _aware(published_before), t.papers.c.deleted_at.is_(None))
        .order_by(last_sent, t.papers.c.arxiv_id)
        .limit(limit)
    )
    return [_to_paper(row) for row in await conn.execute(stmt)]


async def last_labelled_at(conn: AsyncConnection) -> datetime | None:
    """When the newest label was written (any model): is the stream making progress?"""
    newest: datetime | None = (
        await conn.execute(select(func.max(t.labels.c.labelled_at)))
    ).scalar_one()
    return newest


async def papers_for_relabel(
    conn: AsyncConnection, *, since: datetime | None, batch: int
) -> AsyncIterator[list[Paper]]:
    """Every stored paper in pages of ``batch``, by id (keyset pagination, so the pages
    stay cheap however deep). With ``since``: only papers whose arXiv date (latest
    version, else v1, else when we first saw it) is at or after ``since``."""
    p = t.papers.c
    arxiv_date = func.coalesce(p.updated, p.submitted, p.first_seen_at)
    after: str | None = None
    while True:
        stmt = (
            select(t.papers)
            .where(p.deleted_at.is_(None))
            .order_by(t.papers.c.arxiv_id)
            .limit(batch)
        )
        if since is not None:
            stmt = stmt.where(arxiv_date >= _aware(since))
        if after is not None:
            stmt = stmt.where(p.arxiv_id > after)
        rows = (await conn.execute(stmt)).all()
        if not rows:
            return
        yield [_to_paper(row) for row in rows]
        if len(rows) < batch:
            return
        after = rows[-1].arxiv_id


async def count_papers(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(t.papers))).scalar_one())


async def progress_counts(conn: AsyncConnection) -> dict[str, int]:
    """For progress lines: papers stored, published at least once (current version), and
    labelled (current version) by the promoted model. Three counts, one round trip."""
    p, lab, m = t.papers.c, t.labels.c, t.models.c
    labelled = (
        select(lab.arxiv_id)
        .join(t.models, (m.version == lab.model_version) & m.promoted)
        .where(lab.arxiv_id == p.arxiv_id, lab.version == p.version)
        .exists()
    )
    stmt = select(
        func.count().label("papers"),
        func.count(p.published_at).label("published"),
        func.count().filter(labelled).label("labelled"),
    ).select_from(t.papers)
    row = (await conn.execute(stmt)).one()
    return {"papers": row.papers, "published": row.published, "labelled": row.labelled}


# --- labels -----------------------------------------------------------------------------


async def upsert_labels(conn: AsyncConnection, rows: Sequence[LabelRow]) -> int:
    """Write a batch of labels in one statement; replaying it leaves one row per key.

    Returns the number of distinct (arxiv_id, version, model_version) keys written.
    """
    by_key = {(row.arxiv_id, row.version, row.model_version): row for row in rows}  # last wins
    if not by_key:
        return 0
    for row in by_key.values():
        _aware(row.labelled_at)
    stmt = insert(t.labels)
    key = ("arxiv_id", "version", "model_version")
    kept = (*key, "published_at")  # a replay never forgets that a label was already sent
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={c.name: stmt.excluded[c.name] for c in t.labels.columns if c.name not in kept},
    )
    ordered = [by_key[key] for key in sorted(by_key)]  # id order: no deadlocks (see papers)
    await conn.execute(stmt, [asdict(row) for row in ordered])
    return len(by_key)


LabelKey = tuple[str, int, str]
"""(arxiv_id, version, model_version): what a label row and its message are keyed on."""
_LABEL_FIELDS = tuple(f.name for f in fields(LabelRow))


async def get_labels(conn: AsyncConnection, arxiv_id: str) -> list[LabelRow]:
    """Every label of one paper, all versions and models, newest first."""
    stmt = (
        select(*(t.labels.c[name] for name in _LABEL_FIELDS))
        .where(t.labels.c.arxiv_id == arxiv_id)
        .order_by(t.labels.c.labelled_at.desc(), t.labels.c.version.desc())
    )
    return [LabelRow(**row._asdict()) for row in await conn.execute(stmt)]


async def unpublished_keys(conn: AsyncConnection, keys: Iterable[LabelKey]) -> set[LabelKey]:
    """Which of ``keys`` have a label row whose message was not sent yet."""
    wanted = list(keys)
    if not wanted:
        return set()
    lab = t.labels.c
    stmt = select(lab.arxiv_id, lab.version, lab.model_version).where(
        lab.published_at.is_(None),
        tuple_(lab.arxiv_id, lab.version, lab.model_version).in_(wanted),
    )
    return {(r.arxiv_id, r.version, r.model_version) for r in await conn.execute(stmt)}


async def mark_labels_published(
    conn: AsyncConnection, keys: Iterable[LabelKey], *, now: datetime
) -> int:
    """Record that these labels' messages reached the broker; returns rows touched."""
    wanted = list(keys)
    if not wanted:
        return 0
    lab = t.labels.c
    result = await conn.execute(
        update(t.labels)
        .where(tuple_(lab.arxiv_id, lab.version, lab.model_version).in_(wanted))
        .values(published_at=_aware(now))
    )
    return result.rowcount


@dataclass(frozen=True)
class UnsentLabel:
    """A label whose message must be sent again, with what the message needs of its paper."""

    label: LabelRow
    title: str
    categories: list[str]


async def claim_unpublished_labels(
    conn: AsyncConnection, *, labelled_before: datetime, limit: int
) -> list[UnsentLabel]:
    """Oldest labels not yet published, locked for this transaction (``SKIP LOCKED``: two
    workers never claim the same row). Send them, mark them, then commit."""
    lab = t.labels.c
    stmt = (
        select(*(lab[name] for name in _LABEL_FIELDS), t.papers.c.title, t.papers.c.categories)
        .join(t.papers, t.papers.c.arxiv_id == lab.arxiv_id)
        .where(
            lab.published_at.is_(None),
            lab.labelled_at < _aware(labelled_before),
            t.papers.c.deleted_at.is_(None),  # arXiv deleted it: nothing more to announce
        )
        .order_by(lab.labelled_at)
        .limit(limit)
        .with_for_update(of=t.labels, skip_locked=True)
    )
    out = []
    for row in await conn.execute(stmt):
        data = row._asdict()
        title, categories = data.pop("title"), data.pop("categories")
        out.append(UnsentLabel(LabelRow(**data), title, list(categories)))
    return out


async def forget_label_publication(conn: AsyncConnection) -> int:
    """Mark every label unpublished (the broker lost ``classified-papers``): the workers'
    resend timer sends them all again (stream.delivery). Returns how many."""
    result = await conn.execute(
        update(t.labels).where(t.labels.c.published_at.is_not(None)).values(published_at=None)
    )
    return result.rowcount


async def label_counts(conn: AsyncConnection, model_version: str) -> int:
    """How many (paper, version) rows ``model_version`` has labelled."""
    stmt = select(func.count()).where(t.labels.c.model_version == model_version)
    return int((await conn.execute(stmt)).scalar_one())


# --- models -----------------------------------------------------------------------------


def _to_model(row: Row[Any]) -> ModelRow:
    return ModelRow(**row._asdict())


async def register_model(
    conn: AsyncConnection,
    *,
    version: str,
    created_at: datetime,
    path: str,
    embedder: str,
    metrics: dict[str, Any],
    promote: bool,
) -> ModelRow:
    """Add a model version (registering it again refreshes path, embedder and metrics).

    ``promote=True`` also promotes it, with ``promoted_at = created_at``.
    """
    stmt = insert(t.models).values(
        version=version,
        created_at=_aware(created_at),
        path=path,
        embedder=embedder,
        metrics=metrics,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.models.c.version],
        set_={"path": path, "embedder": embedder, "metrics": metrics},
    )
    await conn.execute(stmt)
    if promote:
        await promote_model(conn, version, now=created_at)
    row = await get_model(conn, version)
    assert row is not None  # just written in this transaction
    return row


async def promote_model(
    conn: AsyncConnection, version: str, *, now: datetime, decision: dict[str, Any] | None = None
) -> None:
    """Make ``version`` the promoted model and demote the previous one, atomically.

    Run it inside the caller's transaction. Demote first: the unique index on promoted
    rows is checked row by row, so a single UPDATE flipping both could trip it.
    Promoting the promoted version again only refreshes ``promoted_at`` (and decision).
    Raises ``ModelNotFoundError`` for an unknown version.
    """
    await conn.execute(select(func.pg_advisory_xact_lock(_PROMOTION_LOCK)))
    if await get_model(conn, version) is None:
        raise ModelNotFoundError(f"no model version {version!r} registered")
    await conn.execute(
        update(t.models)
        .where(t.models.c.promoted, t.models.c.version != version)
        .values(promoted=False)
    )
    values: dict[str, Any] = {"promoted": True, "promoted_at": _aware(now)}
    if decision is not None:
        values["decision"] = decision
    await conn.execute(update(t.models).where(t.models.c.version == version).values(**values))


async def record_decision(conn: AsyncConnection, version: str, decision: dict[str, Any]) -> None:
    """Store the retrain decision on a model, promoted or not."""
    result = await conn.execute(
        update(t.models).where(t.models.c.version == version).values(decision=decision)
    )
    if result.rowcount == 0:
        raise ModelNotFoundError(f"no model version {version!r} registered")


async def promoted_model(conn: AsyncConnection) -> ModelRow | None:
    row = (await conn.execute(select(t.models).where(t.models.c.promoted))).first()
    return _to_model(row) if row else None


async def promoted_version(conn: AsyncConnection) -> str | None:
    """The version every worker should use, or None before the first promotion."""
    row = await promoted_model(conn)
    return row.version if row else None


async def get_model(conn: AsyncConnection, version: str) -> ModelRow | None:
    row = (await conn.execute(select(t.models).where(t.models.c.version == version))).first()
    return _to_model(row) if row else None


async def list_models(conn: AsyncConnection) -> list[ModelRow]:
    """Newest first."""
    stmt = select(t.models).order_by(t.models.c.created_at.desc(), t.models.c.version.desc())
    return [_to_model(row) for row in await conn.execute(stmt)]


# --- ingest checkpoints -----------------------------------------------------------------


async def get_checkpoint(conn: AsyncConnection, source: str) -> str | None:
    stmt = select(t.ingest_checkpoints.c.value).where(t.ingest_checkpoints.c.source == source)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def set_checkpoint(conn: AsyncConnection, source: str, value: str, *, now: datetime) -> None:
    stmt = insert(t.ingest_checkpoints).values(source=source, value=value, updated_at=_aware(now))
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.ingest_checkpoints.c.source],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    await conn.execute(stmt)


# --- dead letters and embeddings (what the API reads besides labels) ---------------------


async def record_dead_letters(conn: AsyncConnection, letters: Sequence[DeadLetter]) -> int:
    """Keep a row per dead letter (the payload itself is on the dead-letter topic); the
    same message dead-lettered again for the same reason adds nothing. Returns rows added."""
    rows = {
        (d.reason, d.source_topic, d.payload_sha256 or ""): {
            "reason": d.reason,
            "source_topic": d.source_topic,
            "payload_sha256": d.payload_sha256 or "",
            "key": d.key,
            "error": d.error[:2000],
            "payload_bytes": d.payload_bytes,
            "failed_at": _aware(d.failed_at),
        }
        for d in letters
    }
    if not rows:
        return 0
    stmt = (
        insert(t.dead_letters)
        .values([rows[key] for key in sorted(rows)])
        .on_conflict_do_nothing()
        .returning(t.dead_letters.c.reason)
    )
    return len((await conn.execute(stmt)).all())


async def has_vector_store(conn: AsyncConnection) -> bool:
    """Whether this database has the pgvector table of paper embeddings (migration 0004
    creates it only where the extension is available)."""
    found = await conn.execute(text("SELECT to_regclass('paper_embeddings') IS NOT NULL"))
    return bool(found.scalar_one())


@lru_cache(maxsize=4)
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.7g"] * dim) + "]"


def _vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, ``[0.1234567,...]``: one %-format over the whole vector, at
    ~60% of the CPU of formatting each float on its own (the worker does it per paper)."""
    return _vector_format(len(vector)) % tuple(vector)


async def upsert_embeddings(
    conn: AsyncConnection,
    rows: Sequence[tuple[str, int, Sequence[float]]],
    *,
    embedder: str,
    now: datetime,
) -> int:
    """One embedding per paper ``(arxiv_id, version, vector)``; a newer version (or another
    embedder) replaces it. Only where ``has_vector_store``."""
    if not rows:
        return 0
    stmt = text(
        "INSERT INTO paper_embeddings (arxiv_id, version, embedder, embedding, embedded_at) "
        "VALUES (:arxiv_id, :version, :embedder, CAST(:embedding AS vector), :now) "
        "ON CONFLICT (arxiv_id) DO UPDATE SET version = EXCLUDED.version, "
        "embedder = EXCLUDED.embedder, embedding = EXCLUDED.embedding, "
        "embedded_at = EXCLUDED.embedded_at "
        "WHERE paper_embeddings.version <= EXCLUDED.version"
    )
    params = [
        {
            "arxiv_id": arxiv_id,
            "version": version,
            "embedder": embedder,
            "embedding": _vector_literal(vector),
            "now": _aware(now),
        }
        for arxiv_id, version, vector in sorted(rows, key=lambda r: r[0])
    ]
    await conn.execute(stmt, params)
    return len(params)
