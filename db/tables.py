"""The tables, as SQLAlchemy Core. Migrations create them; a test checks they agree.

    papers              one row per paper (canonical id), holding its latest version
    models              every registered model version; at most one promoted
    labels              one row per (paper, version, model version)
    ingest_checkpoints  where each feed left off (OAI datestamp, resumption point, ...)
    dead_letters        what the worker dead-lettered (the payload is on the dead-letter topic)
    latest_labels       view (created in SQL by the migration): the user-facing surface
    paper_embeddings    pgvector table, only where the extension exists (migration 0004);
                        written and read in SQL (db.repository, db.reads), not declared here

Every timestamp is ``timestamptz`` and written as an aware UTC datetime.
"""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

metadata = MetaData()

Timestamp = TIMESTAMP(timezone=True)

papers = Table(
    "papers",
    metadata,
    Column("arxiv_id", Text, primary_key=True),  # canonical, version stripped
    Column("version", Integer, nullable=False),  # the latest version stored
    Column("title", Text, nullable=False),
    Column("abstract", Text),
    Column("authors", Text),
    Column("categories", ARRAY(Text), nullable=False),  # declared, primary first
    Column("primary_category", Text),  # categories[1], kept as a column for user SQL
    Column("submitted", Timestamp),  # v1 date (arXiv's)
    Column("updated", Timestamp),  # latest version date (arXiv's)
    Column("doi", Text),
    Column("journal_ref", Text),
    Column("source", Text, nullable=False),  # rss | oai | snapshot | relabel
    Column("announce_type", Text),
    Column("first_seen_at", Timestamp, nullable=False),  # our clock, from here down
    Column("last_seen_at", Timestamp, nullable=False),
    Column("published_at", Timestamp),  # last publish of the current version to Kafka
    Column("updated_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),  # an OAI harvest reported it deleted; NULL: live
)

models = Table(
    "models",
    metadata,
    Column("version", Text, primary_key=True),
    Column("created_at", Timestamp, nullable=False),
    Column("path", Text, nullable=False),  # directory name under the models dir
    Column("embedder", Text, nullable=False),
    Column("metrics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("promoted", Boolean, nullable=False, server_default=text("false")),
    Column("promoted_at", Timestamp),
    Column("decision", JSONB),  # the retrain decision, candidate and incumbent numbers
    # At most one promoted model: a unique index over the rows where promoted is true.
    Index("models_one_promoted", "promoted", unique=True, postgresql_where=text("promoted")),
)

labels = Table(
    "labels",
    metadata,
    Column(
        "arxiv_id",
        Text,
        ForeignKey("papers.arxiv_id", ondelete="CASCADE", name="labels_arxiv_id_fkey"),
        nullable=False,
    ),
    Column("version", Integer, nullable=False),  # the paper version the model read
    Column(
        "model_version",
        Text,
        ForeignKey("models.version", name="labels_model_version_fkey"),
        nullable=False,
    ),
    Column("domain", Text, nullable=False),
    Column("domain_score", REAL, nullable=False),
    Column("category", Text, nullable=False),
    Column("category_score", REAL, nullable=False),
    Column("top_k", JSONB, nullable=False),  # {"domain": [{"label", "score"}], "category": [...]}
    Column("agrees_with_declared", Boolean),  # null when the paper declares no category
    Column("labelled_at", Timestamp, nullable=False),
    Column("published_at", Timestamp),  # its message reached classified-papers; NULL: re-send
    PrimaryKeyConstraint("arxiv_id", "version", "model_version", name="labels_pkey"),
    Index("labels_model_version_labelled_at", "model_version", "labelled_at"),
    Index("labels_unpublished", "labelled_at", postgresql_where=text("published_at IS NULL")),
)

ingest_checkpoints = Table(
    "ingest_checkpoints",
    metadata,
    Column("source", Text, primary_key=True),  # e.g. oai:arXivRaw:cs:cs:AI
    Column("value", Text, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("reason", Text, nullable=False),  # decode | classify | store
    Column("source_topic", Text, nullable=False),
    Column("payload_sha256", Text, nullable=False),
    Column("key", Text),
    Column("error", Text, nullable=False),
    Column("payload_bytes", Integer),
    Column("failed_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("reason", "source_topic", "payload_sha256", name="dead_letters_pkey"),
)
