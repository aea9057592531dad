"""Initial schema: papers, models, labels, ingest_checkpoints and the latest_labels view.

Spelled out here rather than built from db.tables, so this revision never changes when
the tables do; tests/integration/test_db.py checks that head matches db.tables.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)

# The documented user SQL surface: one row per paper under the promoted model, the most
# recent paper version that model labelled. Title and dates are the paper's current ones.
LATEST_LABELS = """
CREATE VIEW latest_labels AS
SELECT DISTINCT ON (l.arxiv_id)
    l.arxiv_id,
    l.version,
    p.title,
    p.primary_category AS declared_primary,
    p.categories,
    l.domain,
    l.domain_score,
    l.category,
    l.category_score,
    l.top_k,
    l.agrees_with_declared,
    l.model_version,
    l.labelled_at,
    p.submitted,
    p.updated
FROM labels AS l
JOIN models AS m ON m.version = l.model_version AND m.promoted
JOIN papers AS p ON p.arxiv_id = l.arxiv_id
ORDER BY l.arxiv_id, l.version DESC
"""


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("arxiv_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("abstract", sa.Text()),
        sa.Column("authors", sa.Text()),
        sa.Column("categories", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("primary_category", sa.Text()),
        sa.Column("submitted", TS),
        sa.Column("updated", TS),
        sa.Column("doi", sa.Text()),
        sa.Column("journal_ref", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("announce_type", sa.Text()),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("published_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("arxiv_id", name="papers_pkey"),
    )
    op.create_table(
        "models",
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("embedder", sa.Text(), nullable=False),
        sa.Column(
            "metrics", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("promoted", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("promoted_at", TS),
        sa.Column("decision", postgresql.JSONB()),
        sa.PrimaryKeyConstraint("version", name="models_pkey"),
    )
    op.create_index(
        "models_one_promoted",
        "models",
        ["promoted"],
        unique=True,
        postgresql_where=sa.text("promoted"),
    )
    op.create_table(
        "labels",
        sa.Column("arxiv_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("domain_score", sa.REAL(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("category_score", sa.REAL(), nullable=False),
        sa.Column("top_k", postgresql.JSONB(), nullable=False),
        sa.Column("agrees_with_declared", sa.Boolean()),
        sa.Column("labelled_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("arxiv_id", "version", "model_version", name="labels_pkey"),
        sa.ForeignKeyConstraint(
            ["arxiv_id"], ["papers.arxiv_id"], name="labels_arxiv_id_fkey", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version"], ["models.version"], name="labels_model_version_fkey"
        ),
    )
    op.create_index(
        "labels_model_version_labelled_at", "labels", ["model_version", "labelled_at"]
    )
    op.create_table(
        "ingest_checkpoints",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("source", name="ingest_checkpoints_pkey"),
    )
    op.execute(LATEST_LABELS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS latest_labels")
    op.drop_table("ingest_checkpoints")
    op.drop_index("labels_model_version_labelled_at", table_name="labels")
    op.drop_table("labels")
    op.drop_index("models_one_promoted", table_name="models")
    op.drop_table("models")
    op.drop_table("papers")
