"""The HTTP API against bare in-process prediction, side by side; and similar-papers
latency on 100,000 stored embeddings.

    .venv/bin/python -m bench.api                       # 3 rounds, 64 requests per level
    .venv/bin/python -m bench.api --requests 32 --rounds 2 --embeddings 20000

Predict: ``POST /api/predict`` (one real abstract per request) at 1, 8 and 32 concurrent
clients over loopback (uvicorn, one process), against ``predict_texts([text])`` called one
text at a time in this process with the same model; the report gives requests/s, p50/p99
latency and the ratio to bare per level. Rounds are interleaved (bare, c1, c8, c32, bare,
...) so load swings hit every level alike; medians over rounds, with min and max.
The model: a logreg head trained here on the sample (cached embeddings after the first run).

Similar: ``--embeddings`` generated unit vectors (384-d; generated data is fine for scale,
the query cost does not depend on what the vectors mean) in the embedded PostgreSQL with
the HNSW index, then the API's query (db.reads.similar_papers, k=10) for 200 random anchors:
p50/p99 latency. Written to bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import SAMPLE, machine, shared_data_dir
from core.schemas import Paper
from core.settings import Settings
from db import migrate, reads
from db.embedded import EmbeddedPostgres
from db.engine import create_async_engine_for
from ingest.snapshot import read_snapshot

RESULTS = Path(__file__).parent / "results" / "api.json"
LEVELS = (1, 8, 32)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def _train(settings: Settings, url: str) -> str:
    from lifecycle.registry import Registry
    from lifecycle.train import TrainOptions, train_and_register

    sample = shared_data_dir() / SAMPLE
    trained = train_and_register(
        settings, Registry(settings, url), sample, TrainOptions(head="logreg"), now=NOW
    )
    return trained.result.version


async def _clients(base: str, texts: list[str], concurrency: int) -> tuple[float, list[float]]:
    """``len(texts)`` requests by ``concurrency`` clients: (requests/s, latencies)."""
    latencies: list[float] = []
    queue = list(texts)

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            text = queue.pop()
            started = time.perf_counter()
            response = await http.post(base + "/api/predict", json={"abstract": text})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(texts) / elapsed, latencies


def bench_predict(settings: Settings, url: str, texts: list[str], rounds: int) -> dict[str, Any]:
    import uvicorn

    from api.app import create_app
    from models.classifier import PaperClassifier
    from models.registry import version_dir

    version = _train(settings, url)
    bare_model = PaperClassifier.load(version_dir(settings.models_dir, version), device="cpu")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, url), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    asyncio.run(_clients(base, texts[:8], 1))  # warm: the API loads its model
    bare_model.predict_texts(texts[:8])

    samples: dict[str, list[tuple[float, list[float]]]] = {"bare": []}
    samples.update({f"c{n}": [] for n in LEVELS})
    try:
        for _ in range(rounds):
            latencies = []
            started = time.perf_counter()
            for text in texts:
                t0 = time.perf_counter()
                bare_model.predict_texts([text])
                latencies.append(time.perf_counter() - t0)
            samples["bare"].append((len(texts) / (time.perf_counter() - started), latencies))
            for n in LEVELS:
                samples[f"c{n}"].append(asyncio.run(_clients(base, texts, n)))
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    report: dict[str, Any] = {"model": version, "requests_per_round": len(texts)}
    for name, runs in samples.items():
        rates = [r for r, _ in runs]
        lat = [x for _, lats in runs for x in lats]
        entry = {
            "requests_per_s_median": round(statistics.median(rates), 2),
            "requests_per_s_min": round(min(rates), 2),
            "requests_per_s_max": round(max(rates), 2),
            "latency_p50_ms": round(1000 * _percentile(lat, 50), 1),
            "latency_p99_ms": round(1000 * _percentile(lat, 99), 1),
        }
        if name != "bare":
            per_round = [r / b for (r, _), (b, _) in zip(runs, samples["bare"], strict=True)]
            entry["ratio_to_bare_median"] = round(statistics.median(per_round), 3)
            entry["ratio_to_bare_min"] = round(min(per_round), 3)
            entry["ratio_to_bare_max"] = round(max(per_round), 3)
        report[name] = entry
    return report


async def _fill_embeddings(url: str, n: int, dim: int = 384) -> None:
    """``n`` papers with generated unit vectors; the HNSW index is built after the load."""
    from sqlalchemy import text

    rng = np.random.default_rng(13)
    engine = create_async_engine_for(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX IF EXISTS paper_embeddings_hnsw"))
            for start in range(0, n, 5000):
                ids = [f"9{start + i:09d}" for i in range(min(5000, n - start))]
                vectors = rng.normal(size=(len(ids), dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                await conn.execute(
                    text(
                        "INSERT INTO papers (arxiv_id, version, title, categories, source, "
                        "first_seen_at, last_seen_at, updated_at) "
                        "SELECT id, 1, 'generated', ARRAY['cs.LG'], 'snapshot', :now, :now, :now "
                        "FROM unnest(CAST(:ids AS text[])) AS id"
                    ),
                    {"ids": ids, "now": NOW},
                )
                await conn.execute(
                    text(
                        "INSERT INTO paper_embeddings (arxiv_id, version, embedder, embedding, "
                        "embedded_at) SELECT id, 1, 'generated', CAST(v AS vector), :now "
                        "FROM unnest(CAST(:ids AS text[]), CAST(:vs AS text[])) AS t(id, v)"
                    ),
                    {
                        "ids": ids,
                        "vs": ["[" + ",".join(f"{x:.6f}" for x in row) + "]" for row in vectors],
                        "now": NOW,
                    },
                )
            await conn.execute(
                text(
                    "CREATE INDEX paper_embeddings_hnsw ON paper_embeddings "
                    "USING hnsw (embedding vector_cosine_ops)"
                )
            )
    finally:
        await engine.dispose()


async def _time_similar(url: str, n: int, queries: int) -> list[float]:
    rng = np.random.default_rng(7)
    engine = create_async_engine_for(url)
    latencies: list[float] = []
    try:
        async with engine.connect() as conn:
            for i in rng.integers(0, n, size=queries):
                started = time.perf_counter()
                found = await reads.similar_papers(conn, f"9{int(i):09d}", 10)
                latencies.append(time.perf_counter() - started)
                assert found is not None and len(found) == 10
    finally:
        await engine.dispose()
    return latencies


def bench_similar(url: str, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    asyncio.run(_fill_embeddings(url, n))
    loaded_s = time.perf_counter() - started
    latencies = asyncio.run(_time_similar(url, n, 200))
    return {
        "embeddings": n,
        "load_and_index_s": round(loaded_s, 1),
        "queries": len(latencies),
        "latency_p50_ms": round(1000 * _percentile(latencies, 50), 2),
        "latency_p99_ms": round(1000 * _percentile(latencies, 99), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embeddings", type=int, default=100_000)
    args = parser.parse_args(argv)
    papers: list[Paper] = list(read_snapshot(shared_data_dir() / SAMPLE, max_samples=2000))
    texts = [p.abstract or p.title for p in papers[-args.requests :]]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pgdata") as pg:
        migrate.upgrade(pg.url)
        # the default data dir's embedding cache (a second run embeds nothing); models here
        settings = Settings(device="cpu", ARXIV_STREAM_MODELS_DIR=Path(tmp) / "models")
        report: dict[str, Any] = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine("cpu"),
            "predict": bench_predict(settings, pg.url, texts, args.rounds),
            "similar": bench_similar(pg.url, args.embeddings),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
