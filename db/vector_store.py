"""The pgvector table of paper embeddings, created where PostgreSQL can have it.

``paper_embeddings`` needs the ``vector`` extension. It is made by migration 0004 and again
by every ``db upgrade`` to head (``ensure_vector_store``), so installing pgvector later and
running ``arxiv-stream db upgrade`` is enough. Creating the extension needs a superuser
(pgvector is not a trusted extension): a role that is not one gets the table only where an
administrator already ran ``CREATE EXTENSION vector``; otherwise nothing is created and the
API's similar-papers endpoint answers 501.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
"""MiniLM's dimension; the worker stores only vectors of this size."""


def _one(conn: Connection, sql: str) -> bool:
    return conn.execute(text(sql)).first() is not None


def ensure_vector_store(conn: Connection) -> bool:
    """Create the extension (if allowed), the table and its HNSW index; whether it exists."""
    if conn.execute(text("SELECT to_regclass('paper_embeddings')")).scalar() is not None:
        return True
    if not _one(conn, "SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
        if not _one(conn, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
            log.info("no pgvector on this PostgreSQL: similar papers are off")
            return False
        if not _one(conn, "SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper"):
            log.warning(
                "pgvector is available but only a superuser can CREATE EXTENSION vector; "
                "ask one to, then run `arxiv-stream db upgrade`: similar papers are off"
            )
            return False
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    conn.execute(
        text(
            f"""
            CREATE TABLE paper_embeddings (
                arxiv_id text PRIMARY KEY REFERENCES papers (arxiv_id) ON DELETE CASCADE,
                version integer NOT NULL,
                embedder text NOT NULL,
                embedding vector({EMBEDDING_DIM}) NOT NULL,
                embedded_at timestamptz NOT NULL
            )
            """
        )
    )
    conn.execute(
        text(
            "CREATE INDEX paper_embeddings_hnsw ON paper_embeddings "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    )
    log.info("created paper_embeddings (pgvector, HNSW)")
    return True
