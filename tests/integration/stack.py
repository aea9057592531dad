"""Helpers for tests that run the real CLI processes against the session's broker and DB."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from broker.client import make_consumer
from core.settings import load_settings
from db.engine import psql_url

REPO = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``arxiv-stream ARGS`` as a user would; fail loudly with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"arxiv-stream {' '.join(args)} -> {done.returncode}\n{done.stderr}")
    return done


def start_cli(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(database_url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(psql_url(database_url)) as conn:
        return list(conn.execute(sql, params).fetchall())


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{tail}")


def read_topic(
    env: dict[str, str], topic: str, *, idle_s: float = 4.0
) -> list[tuple[str | None, bytes]]:
    """Every (key, value) on ``topic`` from the beginning, until it has been idle ``idle_s``."""
    settings = load_settings(kafka_bootstrap_servers=env["ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS"])

    async def _read() -> list[tuple[str | None, bytes]]:
        consumer = make_consumer(settings, topic, group_id=None, enable_auto_commit=False)
        await consumer.start()
        out: list[tuple[str | None, bytes]] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
                if not batch:
                    return out
                for records in batch.values():
                    out.extend((r.key.decode() if r.key else None, r.value or b"") for r in records)
        finally:
            await consumer.stop()

    return asyncio.run(_read())


def worker_env(work: Path, database_url: str, kafka_bootstrap: str) -> dict[str, str]:
    """Settings for CLI processes of one test: its own data dir, topics and group."""
    tag = uuid.uuid4().hex[:8]
    return base_env(
        ARXIV_STREAM_DATA_DIR=str(work / "data"),
        ARXIV_STREAM_DATABASE_URL=database_url,
        ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        ARXIV_STREAM_TOPIC_PAPERS=f"papers-{tag}",
        ARXIV_STREAM_TOPIC_CLASSIFIED=f"classified-{tag}",
        ARXIV_STREAM_TOPIC_DEAD_LETTER=f"dead-{tag}",
        ARXIV_STREAM_CONSUMER_GROUP=f"worker-{tag}",
        ARXIV_STREAM_MODEL_POLL_INTERVAL_S="1",
        ARXIV_STREAM_TOPIC_PARTITIONS="2",
    )


def base_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARXIV_STREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(values)
    return env


def subset_snapshot(src: Path, dst: Path, every: int) -> Path:
    """Every ``every``-th line of a gzipped Kaggle-format file (real papers, fewer of them)."""
    with gzip.open(src, "rt") as fin, gzip.open(dst, "wt") as fout:
        fout.writelines(line for i, line in enumerate(fin) if i % every == 0)
    return dst
