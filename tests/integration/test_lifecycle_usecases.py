"""lifecycle/ and the OAI checkpoint harvest called in-process (no subprocess), on the real
PostgreSQL the session starts and real papers from the sample: train -> register ->
promote -> evaluate -> retrain -> relabel, and a per-set harvest with checkpoints and a
deletion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from broker.client import make_consumer
from core.errors import ConfigError, ModelNotFoundError
from core.schemas import Paper, decode_paper
from core.settings import Settings
from db import migrate, repository
from db.engine import create_async_engine_for, run_sync
from ingest.oai_sets import OAIRequest, checkpoint_key, harvest_sets
from ingest.service import Ingester
from ingest.snapshot import read_snapshot
from lifecycle.evaluate import drop_trained, evaluate_version, select_for_evaluation
from lifecycle.registry import Registry
from lifecycle.relabel import publish_for_relabel
from lifecycle.retrain import RetrainOptions, gather_papers, retrain_once
from lifecycle.train import TrainOptions, train_and_register
from tests.integration.stack import subset_snapshot

pytestmark = pytest.mark.integration

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"
OAI_PAGE = "oai-pmh/paperhive-oai-pmh-2018/ListRecords_arXiv_2015-01-01_2015-01-03.xml"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LOGREG = TrainOptions(head="logreg", text_head=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory per module: its embedding cache is shared by the tests here."""
    return tmp_path_factory.mktemp("lifecycle-data")


@pytest.fixture
def registry(pg_database: Callable[[], str], cache_dir: Path) -> Registry:
    """A fresh database each test; bundles and the embedding cache shared in the module."""
    url = pg_database()
    migrate.upgrade(url)
    return Registry(Settings(data_dir=cache_dir, device="cpu"), url)


@pytest.fixture(scope="module")
def small(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return subset_snapshot(shared_data / SAMPLE, tmp_path_factory.mktemp("snap") / "s.jsonl.gz", 15)


def test_train_register_promote_describe(registry: Registry, small: Path) -> None:
    settings = registry.settings
    assert registry.promoted_version() is None
    with pytest.raises(ModelNotFoundError, match="arxiv-stream train"):
        registry.resolve(None)

    first = train_and_register(settings, registry, small, LOGREG, now=T0)
    assert first.promoted  # the first model is promoted so a fresh system can start
    second = train_and_register(settings, registry, small, LOGREG, now=T0 + timedelta(hours=1))
    assert not second.promoted
    assert second.result.metrics["timing"]["texts_embedded"] == 0  # the cache served all
    assert registry.resolve(None) == first.result.version
    assert [row.version for row in registry.rows()] == [
        second.result.version,
        first.result.version,
    ]

    registry.promote(second.result.version, now=T0 + timedelta(hours=2))
    assert registry.promoted_version() == second.result.version
    described = registry.describe(None)
    assert described["version"] == second.result.version and described["promoted"]
    assert described["config"]["heads"]["category"]["kind"] == "logreg"
    assert registry.trained_ids(first.result.version)  # split.json's train and val ids

    with pytest.raises(ModelNotFoundError):
        registry.promote("m20200101-000000-abcd", now=T0)  # no such bundle
    with pytest.raises(ModelNotFoundError, match="not a model version id"):
        registry.load("../etc")
    with pytest.raises(ConfigError, match="--head finetune"):
        train_and_register(settings, registry, small, TrainOptions(epochs=2), now=T0)


def test_evaluate_then_retrain_through_the_gate(
    registry: Registry, small: Path, shared_data: Path, tmp_path: Path
) -> None:
    settings = registry.settings
    incumbent = train_and_register(settings, registry, small, LOGREG, now=T0).result.version
    test_part = select_for_evaluation(read_snapshot(small), only_split="test", seed=13)
    assert 0 < len(test_part) < 60
    metrics = evaluate_version(registry, incumbent, test_part)
    assert metrics["model_version"] == incumbent and metrics["n"] == len(test_part)
    # Scored on its own training file, a model looks better than it is: say so, and offer
    # the papers it did not train on (defect 10 of issue 8).
    own = list(read_snapshot(small))
    unseen, trained_on = drop_trained(registry, incumbent, own)
    assert trained_on == len(registry.trained_ids(incumbent)) > 0.7 * len(own)
    assert {p.arxiv_id for p in test_part} <= {p.arxiv_id for p in unseen}  # the test split

    larger = subset_snapshot(shared_data / SAMPLE, tmp_path / "l.jsonl.gz", 7)
    options = RetrainOptions(train=LOGREG, margin=1.0, include_ingested=False)
    decision = retrain_once(settings, registry, larger, options, now=T0 + timedelta(days=1))
    challenger = decision["challenger"]
    assert decision["incumbent"] == incumbent and decision["promote"]  # margin 1: never worse
    assert decision["warm_from"] is None  # twice the papers: the selection grid again
    # Held out: distinct papers of the challenger's test split that the incumbent never
    # trained on (the two subsets share papers, so some of that split are excluded).
    split = json.loads((registry.path(challenger) / "split.json").read_text())
    test_ids = set(split["test_ids"])
    assert len(test_ids) == len(split["test_ids"])  # each paper once
    unseen_by_incumbent = test_ids - registry.trained_ids(incumbent)
    assert decision["held_out"] == len(unseen_by_incumbent) > 0
    row = registry.row(challenger)
    assert row is not None and row.promoted and row.decision is not None
    assert row.decision["incumbent_metrics"]["n"] == decision["held_out"]

    strict = RetrainOptions(train=LOGREG, margin=-1.0, include_ingested=False)  # always worse
    kept = retrain_once(settings, registry, larger, strict, now=T0 + timedelta(days=2))
    assert not kept["promote"] and registry.promoted_version() == challenger
    stored = registry.row(kept["challenger"])
    assert stored is not None and not stored.promoted and stored.decision == kept
    # No new papers: the challenger's choices refitted from its weights, nothing embedded
    assert kept["warm_from"] == challenger
    warm = json.loads((registry.path(kept["challenger"]) / "metrics.json").read_text())
    chosen = json.loads((registry.path(challenger) / "metrics.json").read_text())
    assert warm["selection"]["warm_start"]["from"] == challenger
    assert warm["selection"]["category_head"] == chosen["selection"]["category_head"]
    assert warm["timing"]["texts_embedded"] == 0
    # growth counts from when the grid last chose, not from the last warm challenger
    rows = json.loads((registry.path(challenger) / "config.json").read_text())["training"]
    assert warm["selection"]["warm_start"]["chosen_at_rows"] == rows["split"]["train"]
    _growth_counts_since_the_grid(registry.path(kept["challenger"]), tmp_path)
    _warm_start_refusals(registry.path(challenger))
    cold = RetrainOptions(train=LOGREG, margin=-1.0, include_ingested=False, cold=True)
    forced = retrain_once(settings, registry, larger, cold, now=T0 + timedelta(days=3))
    assert forced["warm_from"] is None


def test_retrain_trains_on_one_copy_of_each_paper_the_ingested_one_winning(
    registry: Registry, small: Path
) -> None:
    snapshot = list(read_snapshot(small))
    ingested = [
        snapshot[0].model_copy(update={"version": snapshot[0].version + 1, "source": "rss"}),
        snapshot[1],
        Paper(arxiv_id="2412.99999", version=1, title="New", categories=["cs.LG"], source="rss"),
    ]

    async def store(conn: Any) -> None:
        await repository.upsert_papers(conn, ingested, now=T0)

    run_sync(registry.database_url, store)
    papers = gather_papers(registry, small, RetrainOptions(train=LOGREG))
    ids = [p.arxiv_id for p in papers]
    assert len(ids) == len(set(ids)) == len(snapshot) + 1  # duplicates of snapshot papers
    by_id = {p.arxiv_id: p for p in papers}
    assert by_id[snapshot[0].arxiv_id].version == snapshot[0].version + 1  # ingested wins
    assert "2412.99999" in by_id


def test_relabel_publishes_every_live_stored_paper(
    registry: Registry, kafka_bootstrap: str, shared_data: Path
) -> None:
    papers = list(read_snapshot(shared_data / SAMPLE, max_samples=30))

    async def store() -> None:
        engine = create_async_engine_for(registry.database_url)
        try:
            async with engine.begin() as conn:
                await repository.upsert_papers(conn, papers, now=T0)
                await repository.mark_deleted(conn, [papers[0].arxiv_id], now=T0)
        finally:
            await engine.dispose()

    asyncio.run(store())
    settings = registry.settings.model_copy(
        update={"kafka_bootstrap_servers": kafka_bootstrap, "topic_papers": "relabel-usecase"}
    )
    sent = asyncio.run(publish_for_relabel(settings, registry.database_url, since=None))
    assert sent == len(papers) - 1  # the deleted one stays out

    async def read() -> list[str]:
        consumer = make_consumer(settings, "relabel-usecase", group_id=None)
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=5000)
        finally:
            await consumer.stop()
        values = [decode_paper(r.value or b"") for part in batch.values() for r in part]
        assert all(p.source == "relabel" for p in values)
        return [p.arxiv_id for p in values]

    assert sorted(asyncio.run(read())) == sorted(p.arxiv_id for p in papers[1:])


class RecordedOAI:
    """Serves one recorded ListRecords page (a deletion spliced in) and logs each request."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.requests: list[dict[str, str]] = []

    async def get(self, url: str, params: dict[str, str] | None = None) -> bytes:
        self.requests.append(dict(params or {}))
        return self.page


class Sent:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def send(self, topic: str, *, key: str, value: bytes) -> None:
        self.keys.append(key)

    async def flush(self) -> None:
        return None


@pytest.fixture
def oai_page(shared_data: Path) -> Iterator[bytes]:
    real = (shared_data / OAI_PAGE).read_bytes()
    deleted = (
        b'<record><header status="deleted"><identifier>oai:arXiv.org:1501.00001</identifier>'
        b"<datestamp>2015-01-03</datestamp></header></record>\n</ListRecords>"
    )
    yield real.replace(b"</ListRecords>", deleted)


async def test_oai_harvest_per_set_moves_checkpoints_and_records_deletions(
    pg_database: Callable[[], str], oai_page: bytes
) -> None:
    url = pg_database()
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_async_engine_for(url)
    settings = Settings(oai_sets=["cs", "math"], oai_metadata_prefix="arXiv")
    sent, server = Sent(), RecordedOAI(oai_page)
    producer: Any = sent
    ingester = Ingester(settings, engine=engine, producer=producer, clock=lambda: T0)
    try:
        stored = Paper(
            arxiv_id="1501.00001", version=1, title="Stored", categories=["cs.DM"], source="oai"
        )
        await ingester.ingest([stored])
        sent.keys.clear()
        request = OAIRequest.from_settings(settings)
        assert request.sets == ["cs", "math"]
        first = await harvest_sets(ingester, server, request)
        # no checkpoint yet: each set starts from yesterday (of the injected clock)
        assert [(r["set"], r["from"]) for r in server.requests] == [
            ("cs", "2026-11-30"),
            ("math", "2026-11-30"),
        ]
        # the same recorded page for both sets: its papers are published once
        assert first.seen == 2 * len(sent.keys) and first.published == len(sent.keys) == 2
        async with engine.connect() as conn:
            saved = {
                s: await repository.get_checkpoint(conn, checkpoint_key("arXiv", s))
                for s in ("cs", "math")
            }
            deleted = (
                await conn.execute(
                    text("SELECT deleted_at FROM papers WHERE arxiv_id='1501.00001'")
                )
            ).scalar_one()
        # the checkpoint is the day of the list's first responseDate (recorded in 2018)
        assert saved == {"cs": "2018-06-21", "math": "2018-06-21"}
        assert deleted == T0 and first.deleted == 1

        server.requests.clear()
        again = await harvest_sets(
            ingester, server, OAIRequest.from_settings(settings, set_spec="cs")
        )
        assert [(r["set"], r["from"]) for r in server.requests] == [("cs", "2018-06-21")]
        assert again.published == 0 and again.deleted == 0  # nothing new; deletion recorded
        until = OAIRequest.from_settings(
            settings, from_date=date(2015, 1, 1), until=date(2015, 1, 3)
        )
        server.requests.clear()
        await harvest_sets(ingester, server, until)
        assert {(r["from"], r["until"]) for r in server.requests} == {("2015-01-01", "2015-01-03")}
    finally:
        await engine.dispose()


def test_run_sync_is_one_transaction(pg_database: Callable[[], str]) -> None:
    url = pg_database()
    migrate.upgrade(url)
    assert run_sync(url, repository.promoted_version) is None


def _warm_start_refusals(bundle: Path) -> None:
    """When a warm refit does not apply, ``load_warm_start`` says why (the train is cold)."""
    from training.warm import load_warm_start

    rows = json.loads((bundle / "config.json").read_text())["training"]["split"]["train"]
    name = "sentence-transformers/all-MiniLM-L6-v2"

    def why(**changes: Any) -> str:
        found, reason = load_warm_start(
            bundle, **({"embedder_name": name, "dim": 384, "train_rows": rows} | changes)
        )
        assert (found is None) == bool(changes), reason
        return reason

    assert "'s choices and weights" in why()  # it applies
    assert "more than 20% new" in why(train_rows=int(rows * 1.5))
    assert "regime" in why(train_rows=30_000)
    assert "--head mlp asked for" in why(head="mlp")
    assert "reads sentence-transformers/all-MiniLM-L6-v2 (384-d)" in why(dim=768)


def _growth_counts_since_the_grid(warm_bundle: Path, tmp_path: Path) -> None:
    """A warm challenger whose heads were chosen at half today's papers is not refitted
    warm again, though it trained on all of them itself."""
    import shutil

    from training.warm import load_warm_start

    bundle = tmp_path / warm_bundle.name
    shutil.copytree(warm_bundle, bundle)
    metrics = json.loads((bundle / "metrics.json").read_text())
    rows = json.loads((bundle / "config.json").read_text())["training"]["split"]["train"]
    name = "sentence-transformers/all-MiniLM-L6-v2"
    found, _ = load_warm_start(bundle, embedder_name=name, dim=384, train_rows=rows)
    assert found is not None
    metrics["selection"]["warm_start"]["chosen_at_rows"] = rows // 2
    (bundle / "metrics.json").write_text(json.dumps(metrics))
    found, reason = load_warm_start(bundle, embedder_name=name, dim=384, train_rows=rows)
    assert found is None and f"{rows // 2} -> {rows} training papers since" in reason
