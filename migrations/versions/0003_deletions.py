"""Papers arXiv deleted (OAI-PMH ``status="deleted"``).

- ``papers.deleted_at``: when a harvest reported the paper deleted (NULL: live). The row and
  its labels stay, as history and so that a later harvest's newer version can revive it
  (a newer version clears ``deleted_at``).
- ``latest_labels`` leaves deleted papers out; the ingester never republishes them and
  ``relabel`` skips them.

Revision ID: 0003_deletions
Revises: 0002_delivery
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_deletions"
down_revision: str | None = "0002_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)

_COLUMNS = """
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
"""
_FROM = """
FROM labels AS l
JOIN papers AS p ON p.arxiv_id = l.arxiv_id
LEFT JOIN models AS m ON m.version = l.model_version
"""
_ORDER = """
ORDER BY l.arxiv_id, l.version DESC, COALESCE(m.promoted, false) DESC, l.labelled_at DESC,
    l.model_version DESC
"""
LIVE_ONLY = (
    f"CREATE VIEW latest_labels AS\nSELECT DISTINCT ON (l.arxiv_id){_COLUMNS}{_FROM}"
    f"WHERE p.deleted_at IS NULL{_ORDER}"
)
ALL_PAPERS = f"CREATE VIEW latest_labels AS\nSELECT DISTINCT ON (l.arxiv_id){_COLUMNS}{_FROM}{_ORDER}"
"""0002's view, restored on downgrade."""


def upgrade() -> None:
    op.add_column("papers", sa.Column("deleted_at", TS))
    op.execute("DROP VIEW IF EXISTS latest_labels")
    op.execute(LIVE_ONLY)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS latest_labels")
    op.execute(ALL_PAPERS)
    op.drop_column("papers", "deleted_at")
