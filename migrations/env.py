"""Alembic environment for arxiv-stream.

The URL comes from our runner (``db.migrate`` sets ``config.attributes["url"]``), or from
``alembic -x url=postgresql://...``, or failing both from the settings (``DATABASE_URL``).
Never from alembic.ini: that file is committed and must hold no secrets.

Migrations run synchronously with psycopg 3, in one transaction that first takes an
advisory lock, so two processes starting together migrate once, one after the other.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from core.errors import ConfigError
from db.engine import sqlalchemy_url, sync_engine_for
from db.tables import metadata

MIGRATION_LOCK = 7_130_521_001  # any constant shared by every migrating process

config = context.config
if config.config_file_name is not None:  # the alembic CLI; db.migrate leaves logging alone
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        from core.settings import load_settings

        url = load_settings().database_url_value()
    if not url:
        raise ConfigError(
            "no database URL: pass -x url=postgresql://... or set DATABASE_URL "
            "(the embedded server is started by arxiv-stream, not by alembic)"
        )
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    context.configure(
        url=sqlalchemy_url(_url()),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller that already holds a connection (tests, tools)
        _run(connection)
        return
    engine = sync_engine_for(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
