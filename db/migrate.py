"""Run the Alembic migrations from Python: no alembic.ini, no URL in any file.

    upgrade(url)                  bring the schema to head (start-up step, after wait_for_database)
    downgrade(url, "base")        drop everything
    current(url)                  the applied revision, None on an empty database

The URL travels in ``Config.attributes`` (read by migrations/env.py) rather than as a
main option, because ConfigParser would treat a ``%`` in an encoded password as
interpolation. These are sync functions (Alembic is sync): from async code call them
with ``await asyncio.to_thread(upgrade, url)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from core.errors import ConfigError
from db.engine import sync_engine_for
from db.vector_store import ensure_vector_store


def migrations_dir() -> Path:
    """The ``migrations/`` directory beside the ``db`` package.

    Holds for a source checkout, ``pip install -e .`` (db/ resolves into the checkout) and
    a wheel (``migrations`` is installed as a top-level package next to ``db``).
    """
    path = Path(__file__).resolve().parent.parent / "migrations"
    if not (path / "env.py").is_file():
        raise ConfigError(f"Alembic migrations not found at {path}")
    return path


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    with _known_revision(revision):
        command.upgrade(alembic_config(url), revision)
    if revision in ("head", head()):
        # pgvector installed since 0004 ran: the embeddings table appears now
        engine = sync_engine_for(url)
        try:
            with engine.begin() as conn:
                ensure_vector_store(conn)
        finally:
            engine.dispose()


def downgrade(url: str, revision: str) -> None:
    with _known_revision(revision):
        command.downgrade(alembic_config(url), revision)


@contextmanager
def _known_revision(revision: str) -> Iterator[None]:
    """An unknown revision is the caller's mistake: one line naming the ones that exist."""
    try:
        yield
    except CommandError as exc:
        if "Can't locate revision" not in str(exc):
            raise
        script = ScriptDirectory.from_config(alembic_config())
        known = ", ".join(sorted(s.revision for s in script.walk_revisions()))
        raise ConfigError(
            f"unknown migration revision {revision!r} (known: base, {known}, head)"
        ) from None


def current(url: str) -> str | None:
    """The revision the database is at; None when never migrated (or downgraded to base)."""
    engine = sync_engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision in migrations/versions."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise ConfigError("no Alembic revisions found")
    return revision
