"""Delivery bookkeeping and a view that survives promotions.

- ``labels.published_at``: when the label's message reached ``classified-papers`` (NULL =
  not yet: the worker re-sends it). Rows that existed before are taken as published.
- ``latest_labels``: per paper, the label of the newest paper version that has any label;
  among that version's labels the promoted model's, else the newest. So promoting a model
  never empties the view (it used to show only the promoted model's labels), and the new
  ``from_promoted_model`` column says which kind each row is.

Revision ID: 0002_delivery
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_delivery"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)

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
    p.updated,
    COALESCE(m.promoted, false) AS from_promoted_model
FROM labels AS l
JOIN papers AS p ON p.arxiv_id = l.arxiv_id
LEFT JOIN models AS m ON m.version = l.model_version
ORDER BY l.arxiv_id, l.version DESC, COALESCE(m.promoted, false) DESC, l.labelled_at DESC,
    l.model_version DESC
"""

# 0001's view, restored on downgrade
PROMOTED_ONLY = """
CREATE VIEW latest_labels AS
SELECT DISTINCT ON (l.arxiv_id)
    l.arxiv_id, l.version, p.title, p.primary_category AS declared_primary, p.categories,
    l.domain, l.domain_score, l.category, l.category_score, l.top_k, l.agrees_with_declared,
    l.model_version, l.labelled_at, p.submitted, p.updated
FROM labels AS l
JOIN models AS m ON m.version = l.model_version AND m.promoted
JOIN papers AS p ON p.arxiv_id = l.arxiv_id
ORDER BY l.arxiv_id, l.version DESC
"""


def upgrade() -> None:
    op.add_column("labels", sa.Column("published_at", TS))
    op.execute("UPDATE labels SET published_at = labelled_at")
    op.create_index(
        "labels_unpublished",
        "labels",
        ["labelled_at"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.execute("DROP VIEW IF EXISTS latest_labels")
    op.execute(LATEST_LABELS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS latest_labels")
    op.execute(PROMOTED_ONLY)
    op.drop_index("labels_unpublished", table_name="labels")
    op.drop_column("labels", "published_at")
