"""The HTTP API on the real PostgreSQL the session starts, with a real small model trained
here from the sample: every endpoint, every error status, pagination, the 501 path without
pgvector, the swap on promotion, the token, and the metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from core.schemas import DeadLetter, Paper
from core.settings import Settings
from db import migrate, repository
from db.engine import create_async_engine_for, run_sync
from db.repository import LabelRow
from ingest.snapshot import read_snapshot
from lifecycle.registry import Registry
from lifecycle.train import TrainOptions, train_and_register
from tests.integration.stack import subset_snapshot

pytestmark = pytest.mark.integration

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LOGREG = TrainOptions(head="logreg", text_head=False)


@pytest.fixture(scope="module")
def trained(
    shared_data: Path, pg_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, str, str, Path]:
    """(settings, database url, promoted version, training subset), trained once here."""
    data = tmp_path_factory.mktemp("api-data")
    url = pg_database()
    migrate.upgrade(url)
    settings = Settings(data_dir=data, device="cpu", model_poll_interval_s=0.0)
    small = subset_snapshot(shared_data / SAMPLE, data / "small.jsonl.gz", 15)
    first = train_and_register(settings, Registry(settings, url), small, LOGREG, now=T0)
    return settings, url, first.result.version, small


@pytest.fixture(scope="module")
def client(trained: tuple[Settings, str, str, Path]) -> Iterator[TestClient]:
    settings, url, _, _ = trained
    with TestClient(create_app(settings, url)) as test_client:
        yield test_client


def _store(url: str, papers: list[Paper], labels: list[LabelRow]) -> None:
    async def write() -> None:
        engine = create_async_engine_for(url)
        try:
            async with engine.begin() as conn:
                await repository.upsert_papers(conn, papers, now=T0)
                await repository.upsert_labels(conn, labels)
        finally:
            await engine.dispose()

    asyncio.run(write())


def _label(paper: Paper, model: str, category: str, score: float, at: datetime) -> LabelRow:
    return LabelRow(
        arxiv_id=paper.arxiv_id,
        version=paper.version,
        model_version=model,
        domain="Computer Science" if category.startswith("cs.") else "Mathematics",
        domain_score=0.9,
        category=category,
        category_score=score,
        top_k={"domain": [], "category": [{"label": category, "score": score}]},
        agrees_with_declared=category in paper.categories,
        labelled_at=at,
    )


def _paper(arxiv_id: str, title: str, categories: list[str]) -> Paper:
    return Paper(
        arxiv_id=arxiv_id, version=1, title=title, abstract="An abstract.",
        categories=categories, source="rss", updated=T0,
    )  # fmt: skip


# --- predict -----------------------------------------------------------------------------


def test_predict_one_and_many(client: TestClient, trained: Any, shared_data: Path) -> None:
    _, _, version, _ = trained
    paper = next(iter(read_snapshot(shared_data / SAMPLE, max_samples=1)))
    one = client.post("/api/predict", json={"title": paper.title, "abstract": paper.abstract})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model_version"] == version
    assert len(body["category_top_k"]) == 5 and len(body["domain_top_k"]) == 5
    assert body["category"] == body["category_top_k"][0]
    scores = [s["score"] for s in body["category_top_k"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1

    many = client.post(
        "/api/predict",
        json=[{"abstract": paper.abstract or "", "top_k": 3}, {"title": "x", "abstract": "y z"}],
    )
    assert many.status_code == 200, many.text
    found = many.json()
    assert found["model_version"] == version and len(found["predictions"]) == 2
    assert len(found["predictions"][0]["category_top_k"]) == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"title": "only a title"}, 422),  # abstract missing
        ({"abstract": "   "}, 422),  # empty
        ({"abstract": "ok", "top_k": 0}, 422),
        ({"abstract": "ok", "extra": 1}, 422),
        ([], 422),
        ([{"abstract": "a"}] * 65, 413),  # more papers than API_MAX_PAPERS_PER_CALL
    ],
)
def test_predict_refuses_bad_bodies(client: TestClient, body: Any, status: int) -> None:
    response = client.post("/api/predict", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail"}


def test_predict_refuses_bad_json_and_oversize_bodies(client: TestClient) -> None:
    bad = client.post(
        "/api/predict", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 422 and bad.json()["error"] == "invalid request"
    huge = client.post(
        "/api/predict",
        content=b'{"abstract": "' + b"a" * 2_100_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"] == "body too large"


def test_without_a_promoted_model_predict_answers_503_saying_how_to_make_one(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    url = pg_database()
    migrate.upgrade(url)
    with TestClient(create_app(Settings(data_dir=tmp_path), url)) as fresh:
        response = fresh.post("/api/predict", json={"abstract": "anything"})
        assert response.status_code == 503
        assert "arxiv-stream train" in response.json()["detail"]
        assert fresh.get("/readyz").status_code == 503
        assert fresh.get("/healthz").json() == {"status": "ok"}
        assert fresh.get("/api/models").json() == {"promoted": None, "models": []}


# --- browse ----------------------------------------------------------------------------------


def test_papers_filters_keyset_pages_detail_and_stats(client: TestClient, trained: Any) -> None:
    _, url, version, _ = trained
    papers = [
        _paper(f"2412.{i:05d}", f"Paper {i} on graphs" if i % 2 else f"Paper {i}", ["cs.LG"])
        for i in range(7)
    ] + [_paper("math/0101001", "An old-style id", ["math.AG", "math.NT"])]
    # papers 2 and 3 share a labelling time (as a batch's labels do): the keyset's tie-break
    when = [T0 + timedelta(min(i, 2) if i < 4 else i) for i in range(len(papers))]
    labels = [
        _label(p, version, "cs.LG" if i < 4 else "math.AG", 0.9 - 0.1 * i, when[i])
        for i, p in enumerate(papers)
    ]
    _store(url, papers, labels)

    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/papers", params=query).json()
        seen += [p["arxiv_id"] for p in page["papers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # no paper twice across pages
    order = sorted(zip(when, [p.arxiv_id for p in papers], strict=True), reverse=True)
    assert seen[: len(papers)] == [arxiv_id for _, arxiv_id in order]  # newest label first

    def ids(**params: Any) -> list[str]:
        response = client.get("/api/papers", params=params)
        assert response.status_code == 200, response.text
        return [p["arxiv_id"] for p in response.json()["papers"]]

    assert set(ids(category="math.AG")) == {
        "2412.00004",
        "2412.00005",
        "2412.00006",
        "math/0101001",
    }
    assert ids(declared="math.NT") == ["math/0101001"]
    assert ids(disagree=True, min_score=0.4) == ["2412.00005", "2412.00004"]
    assert set(ids(q="graphs")) == {"2412.00001", "2412.00003", "2412.00005"}
    maths = ids(domain="Mathematics", since="2026-12-01", until="2026-12-01")
    assert maths == ["math/0101001", "2412.00006", "2412.00005", "2412.00004"]
    assert ids(since="2026-12-02") == []
    assert client.get("/api/papers", params={"cursor": "!!"}).status_code == 422
    assert client.get("/api/papers", params={"limit": 0}).status_code == 422

    detail = client.get("/api/papers/math/0101001v2")  # a version suffix is stripped
    assert detail.status_code == 200
    assert detail.json()["paper"]["title"] == "An old-style id"
    assert [label["model_version"] for label in detail.json()["labels"]] == [version]
    assert client.get("/api/papers/2499.99999").status_code == 404
    assert client.get("/api/papers/not-an-id").status_code == 404

    async def dead() -> None:
        engine = create_async_engine_for(url)
        try:
            async with engine.begin() as conn:
                letter = DeadLetter(
                    reason="decode", error="x", source_topic="t", key=None, payload="{",
                    failed_at=T0, payload_sha256="ab",
                )  # fmt: skip
                assert await repository.record_dead_letters(conn, [letter, letter]) == 1
        finally:
            await engine.dispose()

    asyncio.run(dead())
    stats = client.get("/api/stats", params={"days": 3650}).json()
    assert stats["dead_letters_by_reason"] == {"decode": 1}
    per_day = {(r["day"], r["domain"]): r["papers"] for r in stats["labels_per_domain_per_day"]}
    assert per_day[("2026-12-01", "Computer Science")] == 1
    assert sum(per_day.values()) == len(papers)
    assert all(0 <= r["rate"] <= 1 for r in stats["agreement_per_day"])


def test_similar_papers_through_pgvector_and_501_without_it(
    client: TestClient, trained: Any
) -> None:
    _, url, version, _ = trained
    rng = np.random.default_rng(0)
    base = rng.normal(size=384)
    papers = [_paper(f"2411.{i:05d}", f"Near {i}", ["cs.AI"]) for i in range(5)]
    vectors = [base + rng.normal(scale=0.1 * (i + 1), size=384) for i in range(5)]
    plain = _paper("2411.00099", "Stored, never embedded", ["cs.AI"])
    _store(url, [*papers, plain], [_label(p, version, "cs.AI", 0.5, T0) for p in papers])

    async def embed() -> None:
        engine = create_async_engine_for(url)
        try:
            async with engine.begin() as conn:
                rows = [
                    (p.arxiv_id, 1, (v / np.linalg.norm(v)).tolist())
                    for p, v in zip(papers, vectors, strict=True)
                ]
                await repository.upsert_embeddings(conn, rows, embedder="mini", now=T0)
        finally:
            await engine.dispose()

    asyncio.run(embed())
    response = client.get("/api/papers/2411.00000/similar", params={"k": 3})
    assert response.status_code == 200, response.text
    similar = response.json()["similar"]
    # noise grows with the index, so the nearest to paper 0 come in index order
    assert [s["arxiv_id"] for s in similar] == ["2411.00001", "2411.00002", "2411.00003"]
    assert similar[0]["similarity"] > similar[-1]["similarity"]
    not_embedded = client.get("/api/papers/2411.00099/similar").json()
    assert not_embedded == {"arxiv_id": "2411.00099", "similar": [], "embedded": False}
    assert client.get("/api/papers/2499.99999/similar").status_code == 404

    run_sync(url, lambda conn: conn.exec_driver_sql("DROP TABLE paper_embeddings"))
    gone = client.get("/api/papers/2411.00000/similar")
    assert gone.status_code == 501 and "pgvector" in gone.json()["error"]
    assert client.get("/api/papers/2411.00000").status_code == 200  # nothing else breaks


# --- models, promotion, token, metrics ----------------------------------------------------------


def test_models_and_the_swap_on_promotion(client: TestClient, trained: Any) -> None:
    settings, url, first, small = trained
    listed = client.get("/api/models").json()
    assert listed["promoted"] == first
    registry = Registry(settings, url)
    second = train_and_register(settings, registry, small, LOGREG, now=T0 + timedelta(hours=1))
    registry.promote(second.result.version, now=T0 + timedelta(hours=2))
    body = {"abstract": "We prove a conjecture about prime numbers."}
    assert client.post("/api/predict", json=body).json()["model_version"] == (second.result.version)
    assert client.get("/readyz").json()["model"] == second.result.version
    assert client.get("/api/models").json()["promoted"] == second.result.version


def test_a_token_guards_the_api_but_not_the_page(trained: Any) -> None:
    settings, url, _, _ = trained
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(create_app(guarded, url)) as c:
        assert c.get("/api/models").status_code == 401
        assert c.get("/metrics").status_code == 401
        wrong = c.get("/api/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert c.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 200 and "<title>arxiv-stream" in c.get("/").text
        assert c.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.get("/api/papers/2499.99999")
    text = client.get("/metrics").text
    assert (
        'arxiv_stream_api_requests_total{method="GET",route="/api/papers/{arxiv_id:path}",status="404"}'
        in text
    )
    assert "arxiv_stream_api_request_seconds_bucket" in text
    assert "arxiv_stream_api_predicted_papers_total" in text
    assert json.loads(client.get("/openapi.json").text)["paths"]["/api/predict"]
