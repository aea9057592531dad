"""What the HTTP API reads besides labels: dead letters, and paper embeddings (pgvector).

- ``dead_letters``: every message the worker dead-lettered (reason, error, where it came
  from, size and sha256 of the payload; the payload itself is on the dead-letter topic).
  Keyed on (reason, source_topic, payload_sha256): a redelivered batch adds nothing.
- ``paper_embeddings`` (only where the ``vector`` extension can be had, as in the embedded
  PostgreSQL; the system PostgreSQL here has none): one 384-d unit vector per paper, with an
  HNSW index for cosine distance (db.vector_store, which every upgrade to head runs again).
  Without it the API's similar-papers endpoint answers 501 and nothing else changes.

Revision ID: 0004_api
Revises: 0003_deletions
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db.vector_store import ensure_vector_store

revision: str = "0004_api"
down_revision: str | None = "0003_deletions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("payload_sha256", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("payload_bytes", sa.Integer),
        sa.Column("failed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "reason", "source_topic", "payload_sha256", name="dead_letters_pkey"
        ),
    )
    ensure_vector_store(op.get_bind())


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS paper_embeddings")
    op.drop_table("dead_letters")
