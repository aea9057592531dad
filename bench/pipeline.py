"""The whole pipeline on real components, timed from the ingester to the last label.

Embedded PostgreSQL (migrated) + embedded Tansu + one ``arxiv-stream worker`` subprocess,
as ``arxiv-stream up`` runs them. The model is registered and promoted; one warm-up paper
(not among the N) goes through first, so the clock starts only once the worker has
loaded its model, joined its consumer group and classified a batch. Then the N papers
go through ``ingest.service.Ingester`` (store in PostgreSQL, then publish), and the clock
stops when all N labels are in PostgreSQL *and* all N messages are on the classified topic.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import REPO, rate
from bench.cpu import CpuMeter, postgres_pids
from broker.client import ensure_topics, make_consumer, producer
from broker.embedded import EmbeddedKafka
from core.machine import available_cpus
from core.schemas import Paper
from core.settings import Settings, load_settings
from db import migrate, repository
from db.embedded import EmbeddedPostgres
from db.engine import create_async_engine_for
from ingest.service import Ingester

SINGLE_EVERY_S = 1.0
"""One single paper a second at most, each after the previous one's label: a light rate."""
POLL_S = 0.1
"""How often the labels table is counted: well under the run's resolution (seconds)."""


@dataclass(frozen=True)
class BenchModel:
    """A published bundle: ``models_dir / version`` holds it (the worker's registry layout)."""

    models_dir: Path
    version: str
    embedder_id: str
    metrics: dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_pipeline(
    model: BenchModel,
    papers: Sequence[Paper],
    warmup: Paper,
    *,
    singles: Sequence[Paper] = (),
    workers: int = 1,
    work: Path,
    batch_size: int,
    device: str,
    timeout_s: float,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start everything under ``work``, push ``papers`` through, then ``singles`` one at a
    time (latency), stop everything. ``workers`` worker processes share the cores as
    ``up --workers N`` shares them (``CPU_THREADS`` = cores / N); the clock starts once
    each has loaded its model.

    Stop order on every exit path: worker (SIGTERM, then SIGKILL), our own Kafka clients
    (closed when ``asyncio.run`` returns), Tansu, PostgreSQL last; Tansu waits for
    connected clients on SIGTERM, so it must outlive them (PLATFORM.md).
    """
    tag = uuid.uuid4().hex[:8]  # unique topics and group: a stale broker cannot interfere
    values: dict[str, str] = {
        "topic_papers": f"bench-papers-{tag}",
        "topic_classified": f"bench-classified-{tag}",
        "topic_dead_letter": f"bench-dead-{tag}",
        "consumer_group": f"bench-worker-{tag}",
        "batch_size": str(batch_size),
        "device": device,
        "data_dir": str(work / "data"),
        "log_level": "INFO",
        "worker_metrics_port": "0",
        "cpu_threads": str(max(1, available_cpus() // workers)),
        **(overrides or {}),  # settings of the worker (e.g. concurrent_batches)
    }
    with EmbeddedPostgres(work / "pgdata") as pg:
        migrate.upgrade(pg.url)
        register_model(pg.url, model)
        with EmbeddedKafka(log_path=work / "tansu.log") as kafka:
            settings = load_settings(kafka_bootstrap_servers=kafka.bootstrap_servers, **values)
            asyncio.run(ensure_topics(settings))
            env = _worker_env(values, pg.url, kafka.bootstrap_servers, model.models_dir)
            logs = [work / f"worker-{i + 1}.log" for i in range(workers)]
            started = time.perf_counter()
            processes = [_start_worker(env, log) for log in logs]
            meter = CpuMeter(
                {
                    "workers": lambda: [p.pid for p in processes],
                    "tansu": lambda: [kafka.pid] if kafka.pid else [],
                    "postgres": lambda: postgres_pids(pg.pgdata),
                    "driver": lambda: [os.getpid()],
                },
                alone=["driver"],
            )
            try:
                run = _Run(settings, model.version, processes, logs, started, timeout_s, meter)
                result = asyncio.run(run.drive(pg.url, papers, warmup, singles))
            finally:
                for process in processes:
                    _stop(process)
            result["workers"] = workers
            result["worker_dead_letters"] = sum(
                _count_lines(log, "dead-lettered a message") for log in logs
            )
            return result


def register_model(database_url: str, model: BenchModel) -> None:
    """Register ``model`` in the database at ``database_url`` and promote it."""
    asyncio.run(_register(database_url, model))


async def _register(database_url: str, model: BenchModel) -> None:
    engine = create_async_engine_for(database_url, pooled=False)
    try:
        async with engine.begin() as conn:
            await repository.register_model(
                conn,
                version=model.version,
                created_at=utc_now(),
                path=model.version,
                embedder=model.embedder_id,
                metrics=model.metrics,
                promote=True,
            )
    finally:
        await engine.dispose()


def _worker_env(
    values: dict[str, str], database_url: str, bootstrap: str, models_dir: Path
) -> dict[str, str]:
    # Drop the caller's own configuration: the worker must see exactly this stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARXIV_STREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update({f"ARXIV_STREAM_{key.upper()}": value for key, value in values.items()})
    env.update(
        ARXIV_STREAM_DATABASE_URL=database_url,
        ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        ARXIV_STREAM_MODELS_DIR=str(models_dir),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _count_lines(path: Path, needle: str) -> int:
    try:
        return sum(needle in line for line in path.read_text(errors="replace").splitlines())
    except OSError:
        return 0


class _Run:
    """One timed pass: the warm-up paper, then the N papers."""

    def __init__(
        self,
        settings: Settings,
        version: str,
        workers: list[subprocess.Popen[bytes]],
        logs: list[Path],
        started: float,
        timeout_s: float,
        meter: CpuMeter,
    ) -> None:
        self.settings = settings
        self.meter = meter
        """CPU-seconds per part (workers, Tansu, PostgreSQL, this driver) of the timed pass."""
        self.version = version
        self.workers = workers
        self.logs = logs
        self.messages = 0
        """Classified messages of the N papers seen so far (more than N: some sent twice)."""
        self.started = started
        self.deadline = time.monotonic() + timeout_s

    async def drive(
        self,
        database_url: str,
        papers: Sequence[Paper],
        warmup: Paper,
        singles: Sequence[Paper] = (),
    ) -> dict[str, Any]:
        engine = create_async_engine_for(database_url)
        try:
            async with producer(self.settings) as kafka:
                ingester = Ingester(self.settings, engine=engine, producer=kafka, clock=utc_now)
                while not all(_count_lines(log, "loaded") for log in self.logs):
                    self._check("every worker's model")  # each has joined the group by then
                    await asyncio.sleep(POLL_S)
                await ingester.ingest([warmup])
                await self._wait_for_labels(engine, 1, "the warm-up paper's label")
                ready_s = time.perf_counter() - self.started

                wanted = {p.arxiv_id for p in papers}
                reader = asyncio.create_task(self._read_classified(wanted))
                try:
                    cpu_before = self.meter.read()
                    t0 = time.perf_counter()
                    stats = await ingester.ingest(papers)
                    ingest_s = time.perf_counter() - t0
                    if stats.published != len(papers):
                        raise RuntimeError(
                            f"ingester published {stats.published} of {len(papers)} papers"
                        )
                    # The worker commits a batch's labels before it sends their messages, so
                    # once every message is on the topic the labels are in PostgreSQL: it is
                    # asked then (one query, almost always already true), not polled ten
                    # times a second while the clock runs (that polling cost the pipeline
                    # CPU that the bare worker does not spend).
                    remaining = max(1.0, self.deadline - time.monotonic())
                    classified_s = await asyncio.wait_for(reader, remaining) - t0
                    labels_s = await self._wait_for_labels(engine, len(papers) + 1, "labels") - t0
                    cpu = self.meter.since(cpu_before)
                finally:
                    reader.cancel()
                latencies = await self._single_latencies(ingester, singles)
        finally:
            await engine.dispose()
        end_to_end_s = max(labels_s, classified_s)
        n = len(papers)
        return {
            "papers": n,
            "worker_ready_s": round(ready_s, 2),
            "ingest_s": round(ingest_s, 3),
            "ingest_papers_per_s": round(rate(n, ingest_s), 1),
            "labels_in_postgres_s": round(labels_s, 3),
            "classified_on_topic_s": round(classified_s, 3),
            "end_to_end_s": round(end_to_end_s, 3),
            "end_to_end_papers_per_s": round(rate(n, end_to_end_s), 2),
            "classified_messages_twice": self.messages - n,
            "cpu_s": cpu,
            "cpu_ms_per_paper": round(1000 * sum(cpu.values()) / n, 2),
            "single_paper_latencies_s": [round(x, 4) for x in latencies],
        }

    async def _single_latencies(
        self, ingester: Ingester, singles: Sequence[Paper], every_s: float = SINGLE_EVERY_S
    ) -> list[float]:
        """Seconds from handing each paper to the ingester (store, publish) until its label
        is on the classified topic, one paper at a time at a light rate: the stream is idle
        whenever a paper arrives, so this is what a lone paper waits."""
        consumer = make_consumer(
            self.settings, self.settings.topic_classified, group_id=None,
            enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=20,
        )  # fmt: skip
        await consumer.start()
        latencies: list[float] = []
        try:
            await consumer.getmany(timeout_ms=500)  # assigned, at the end of the topic
            for paper in singles:
                started = time.perf_counter()
                await ingester.ingest([paper])
                while True:
                    found = await consumer.getmany(timeout_ms=20)
                    if any(r.key == paper.arxiv_id.encode() for rs in found.values() for r in rs):
                        latencies.append(time.perf_counter() - started)
                        break
                    self._check(f"the label of single paper {paper.arxiv_id}")
                await asyncio.sleep(max(0.0, every_s - latencies[-1]))
        finally:
            await consumer.stop()
        return latencies

    async def _wait_for_labels(self, engine: AsyncEngine, count: int, what: str) -> float:
        """perf_counter() at the first poll that sees ``count`` label rows of our model."""
        while True:
            async with engine.connect() as conn:
                if await repository.label_counts(conn, self.version) >= count:
                    return time.perf_counter()
            self._check(what)
            await asyncio.sleep(POLL_S)

    async def _read_classified(self, wanted: set[str]) -> float:
        """perf_counter() when every id in ``wanted`` has appeared on the classified topic.

        Reads from the beginning with no group (nothing committed, nothing to join), so it
        cannot miss messages sent before it was assigned its partitions.
        """
        consumer = make_consumer(
            self.settings, self.settings.topic_classified, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        seen: set[str] = set()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    keys = [k for r in records if r.key and (k := r.key.decode()) in wanted]
                    self.messages += len(keys)
                    seen.update(keys)
                if len(seen) == len(wanted):
                    return time.perf_counter()
                self._check("classified messages")
        finally:
            await consumer.stop()

    def _check(self, what: str) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                continue
            raise RuntimeError(
                f"a worker exited with {worker.returncode} while waiting for {what}\n"
                + self._log_tail()
            )
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"timed out waiting for {what}\n" + self._log_tail())

    def _log_tail(self) -> str:
        tails = []
        for log in self.logs:
            try:
                tails.append(
                    f"--- {log.name} (tail) ---\n" + log.read_text(errors="replace")[-3000:]
                )
            except OSError:
                tails.append(f"(no {log.name})")
        return "\n".join(tails)
