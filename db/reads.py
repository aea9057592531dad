"""The read side the HTTP API serves: browse labelled papers, one paper, similar papers,
daily statistics. Read-only; writes stay in db/repository.py.

Pagination is by keyset on (labelled_at, arxiv_id), newest first: a page costs the same
however deep, and papers labelled while a reader pages never shift what they see next.
Similar papers need the pgvector store (migration 0004); ``has_vector_store`` says whether
this database has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

VIEW_COLUMNS = (
    "arxiv_id, version, title, declared_primary, categories, domain, domain_score, category, "
    "category_score, top_k, agrees_with_declared, model_version, labelled_at, submitted, "
    "updated, from_promoted_model"
)


@dataclass(frozen=True)
class PaperFilter:
    domain: str | None = None
    category: str | None = None
    """Predicted category."""
    declared: str | None = None
    """Any declared category (primary or cross-list)."""
    since: date | None = None
    """arXiv date (latest version, else v1) on or after this day."""
    until: date | None = None
    disagree: bool = False
    """Only papers whose predicted category is not among the declared ones."""
    min_score: float | None = None
    """Predicted category score at least this."""
    q: str | None = None
    """Case-insensitive substring of the title."""


@dataclass(frozen=True)
class Cursor:
    labelled_at: datetime
    arxiv_id: str


def _where(f: PaperFilter, after: Cursor | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if f.domain:
        clauses.append("domain = :domain")
        params["domain"] = f.domain
    if f.category:
        clauses.append("category = :category")
        params["category"] = f.category
    if f.declared:
        clauses.append(":declared = ANY(categories)")
        params["declared"] = f.declared
    if f.since:
        clauses.append("COALESCE(updated, submitted)::date >= :since")
        params["since"] = f.since
    if f.until:
        clauses.append("COALESCE(updated, submitted)::date <= :until")
        params["until"] = f.until
    if f.disagree:
        clauses.append("agrees_with_declared IS FALSE")
    if f.min_score is not None:
        clauses.append("category_score >= :min_score")
        params["min_score"] = f.min_score
    if f.q:
        clauses.append("title ILIKE :q")
        params["q"] = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if after is not None:
        clauses.append("(labelled_at, arxiv_id) < (:after_at, :after_id)")
        params.update(after_at=after.labelled_at, after_id=after.arxiv_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def list_papers(
    conn: AsyncConnection, f: PaperFilter, *, after: Cursor | None, limit: int
) -> list[dict[str, Any]]:
    """Rows of ``latest_labels`` matching ``f``, newest label first, at most ``limit``."""
    where, params = _where(f, after)
    stmt = text(
        f"SELECT {VIEW_COLUMNS} FROM latest_labels{where} "
        "ORDER BY labelled_at DESC, arxiv_id DESC LIMIT :limit"
    )
    rows = await conn.execute(stmt, {**params, "limit": limit})
    return [dict(row._mapping) for row in rows]


async def get_paper_row(conn: AsyncConnection, arxiv_id: str) -> dict[str, Any] | None:
    stmt = text(
        "SELECT arxiv_id, version, title, abstract, authors, categories, primary_category, "
        "submitted, updated, doi, journal_ref, source, first_seen_at, deleted_at "
        "FROM papers WHERE arxiv_id = :id"
    )
    row = (await conn.execute(stmt, {"id": arxiv_id})).first()
    return dict(row._mapping) if row else None


async def similar_papers(
    conn: AsyncConnection, arxiv_id: str, k: int
) -> list[dict[str, Any]] | None:
    """The ``k`` nearest papers to ``arxiv_id`` by cosine distance of their embeddings (same
    embedder), through the HNSW index; None when the paper has no stored embedding.

    The index answers only a bare ``ORDER BY embedding <=> <constant> LIMIT n`` over the
    table, so the anchor's vector is read first and passed as a parameter, the nearest
    candidates are taken with slack, and joins and filters apply to those few rows."""
    anchor = (
        await conn.execute(
            text(
                "SELECT embedder, embedding::text AS v FROM paper_embeddings WHERE arxiv_id = :id"
            ),
            {"id": arxiv_id},
        )
    ).first()
    if anchor is None:
        return None
    candidates = 2 * k + 10  # room for the anchor itself, deleted papers, other embedders
    # an HNSW scan yields at most ef_search rows (default 40): widen it for this query only
    await conn.execute(
        text("SELECT set_config('hnsw.ef_search', :n, true)"), {"n": str(max(40, candidates))}
    )
    stmt = text(
        "WITH near AS ("
        "  SELECT arxiv_id, embedder, embedding <=> CAST(:v AS vector) AS distance"
        "  FROM paper_embeddings ORDER BY embedding <=> CAST(:v AS vector) LIMIT :candidates"
        ") "
        "SELECT n.arxiv_id, 1 - n.distance AS similarity, p.title, l.category, l.domain "
        "FROM near AS n "
        "JOIN papers AS p ON p.arxiv_id = n.arxiv_id AND p.deleted_at IS NULL "
        "LEFT JOIN latest_labels AS l ON l.arxiv_id = n.arxiv_id "
        "WHERE n.embedder = :embedder AND n.arxiv_id <> :id "
        "ORDER BY n.distance LIMIT :k"
    )
    params = {
        "id": arxiv_id, "v": anchor.v, "embedder": anchor.embedder, "k": k,
        "candidates": candidates,
    }  # fmt: skip
    rows = await conn.execute(stmt, params)
    return [dict(row._mapping) for row in rows]


async def daily_stats(conn: AsyncConnection, *, days: int) -> dict[str, Any]:
    """Per day of labelling (UTC), over the last ``days``: papers per domain, agreement
    with the declared categories; and dead letters per reason (all time)."""
    per_domain = await conn.execute(
        text(
            "SELECT (labelled_at AT TIME ZONE 'UTC')::date AS day, domain, count(*) AS n "
            "FROM latest_labels WHERE labelled_at >= now() - make_interval(days => :days) "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"days": days},
    )
    agreement = await conn.execute(
        text(
            "SELECT (labelled_at AT TIME ZONE 'UTC')::date AS day, "
            "avg(CASE WHEN agrees_with_declared THEN 1.0 ELSE 0.0 END) AS rate, "
            "count(agrees_with_declared) AS n "
            "FROM latest_labels WHERE labelled_at >= now() - make_interval(days => :days) "
            "AND agrees_with_declared IS NOT NULL GROUP BY 1 ORDER BY 1"
        ),
        {"days": days},
    )
    dead = await conn.execute(
        text("SELECT reason, count(*) AS n FROM dead_letters GROUP BY 1 ORDER BY 1")
    )
    return {
        "labels_per_domain_per_day": [
            {"day": r.day.isoformat(), "domain": r.domain, "papers": r.n} for r in per_domain
        ],
        "agreement_per_day": [
            {"day": r.day.isoformat(), "rate": float(r.rate), "papers": r.n} for r in agreement
        ],
        "dead_letters_by_reason": {r.reason: r.n for r in dead},
    }
