"""PostgreSQL for the tests (a pytest plugin: listed in tests/conftest.py ``pytest_plugins``).

One server for the whole session: an embedded PostgreSQL in a temp dir, or the server
named by ``$ARXIV_STREAM_TEST_DATABASE_URL`` (its role needs CREATEDB). Migrations run
once, into a template database; every database a test gets is a copy of it
(``CREATE DATABASE ... TEMPLATE``, tens of milliseconds), dropped when the session ends.

    pg_url          session   URL of a migrated database shared by the session
    pg_database     session   factory: ``pg_database()`` -> URL of a new migrated database
    fresh_pg_url    function  a migrated database of the test's own
    engine_for      function  factory: ``engine_for(url)`` -> AsyncEngine, disposed after
    async_engine    function  ``engine_for(pg_url)``
    pg_scratch_dir  function  a directory for a test's own embedded server (not tmp_path!)

Tests that count rows or promote models use ``fresh_pg_url`` (or a module fixture built
on ``pg_database``) so the order tests run in cannot change what they see.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.embedded import EmbeddedPostgres
from db.engine import create_async_engine_for, psql_url

EXTERNAL_URL_ENV = "ARXIV_STREAM_TEST_DATABASE_URL"


def url_for_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    return psql_url(make_url(url).set(database=database).render_as_string(hide_password=False))


class DatabaseFactory:
    """Creates migrated databases on one server by copying a migrated template."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url  # any database we may connect to; we never write to it
        self.created: list[str] = []
        self.template = self._new_name("tmpl")
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.created.append(self.template)
        migrate.upgrade(url_for_database(admin_url, self.template))

    def __call__(self) -> str:
        name = self._new_name("test")
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.template)
            )
        )
        self.created.append(name)
        return url_for_database(self.admin_url, name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self._execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self.created.clear()

    @staticmethod
    def _new_name(kind: str) -> str:
        return f"arxiv_stream_{kind}_{uuid.uuid4().hex[:12]}"

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(psql_url(self.admin_url), autocommit=True) as conn:
            conn.execute(statement)


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory for an embedded server's data, removed afterwards.

    Not under pytest's ``tmp_path``: run as root, the server runs as another user, and
    every pytest start (another session's too) chmods ``/tmp/pytest-of-root`` to 0700,
    which cuts a live server off its own files (PANIC on pg_control).
    """
    path = Path(tempfile.mkdtemp(prefix="arxiv-stream-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_scratch_dir() -> Iterator[Path]:
    """For a test that runs an embedded server of its own: ``pg_scratch_dir / "pgdata"``."""
    with scratch_dir() as path:
        yield path


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on the session's server, to create databases from."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        yield external
        return
    with scratch_dir() as path, EmbeddedPostgres(path / "pgdata") as server:
        yield server.admin_url


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    factory = DatabaseFactory(pg_admin_url)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def pg_url(pg_database: Callable[[], str]) -> str:
    return pg_database()


@pytest.fixture
def fresh_pg_url(pg_database: Callable[[], str]) -> str:
    return pg_database()


@pytest.fixture
async def engine_for() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    engines: list[AsyncEngine] = []

    def make(url: str) -> AsyncEngine:
        engine = create_async_engine_for(url)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def async_engine(engine_for: Callable[[str], AsyncEngine], pg_url: str) -> AsyncEngine:
    return engine_for(pg_url)
