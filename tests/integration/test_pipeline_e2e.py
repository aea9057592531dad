"""The whole path on real parts: the real all-archives RSS feed -> ingest (CLI) -> Tansu ->
Faust worker (CLI, real MiniLM + a model trained on real papers) -> PostgreSQL and
``classified-papers``; then idempotence, a new version, a poison message, and the CLI's
read side (tail, db url)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from broker.client import producer
from core.schemas import decode_classified
from core.settings import load_settings
from ingest.rss import parse_rss
from tests.integration.stack import (
    cli,
    query,
    read_topic,
    start_cli,
    stop,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"
TRAIN_SAMPLES = "1200"  # enough for a real model, small enough for 2 CPU cores


@pytest.fixture(scope="module")
def stack(
    shared_data: Path,
    kafka_bootstrap: str,
    pg_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, object]]:
    work = tmp_path_factory.mktemp("e2e")
    database_url = pg_database()
    env = worker_env(work, database_url, kafka_bootstrap)
    trained = cli(
        env,
        "train",
        "--snapshot",
        str(shared_data / SAMPLE),
        "--max-samples",
        TRAIN_SAMPLES,
        "--head",
        "logreg",
    )
    version = re.search(r"model (m[\d-]+[0-9a-f]{4}) promoted", trained.stdout)
    assert version, trained.stdout
    log = work / "worker.log"
    worker = start_cli(env, log, "worker")
    try:
        yield {
            "env": env,
            "db": database_url,
            "version": version.group(1),
            "log": log,
            "work": work,
        }
    finally:
        stop(worker)


def _labels(stack: dict[str, object]) -> int:
    rows = query(
        str(stack["db"]), "SELECT count(*) FROM labels WHERE model_version = %s", stack["version"]
    )
    return int(rows[0][0])  # type: ignore[call-overload]


def test_real_feed_flows_to_postgres_and_classified_topic(
    stack: dict[str, object], shared_data: Path
) -> None:
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    feed = shared_data / FEED
    distinct = {p.arxiv_id for p in parse_rss(feed.read_bytes())}
    assert len(distinct) > 1000

    out = cli(env, "ingest", "rss", "--file", str(feed)).stdout
    assert f"{len(distinct)} new or updated published" in out

    log: Path = stack["log"]  # type: ignore[assignment]
    wait_for(lambda: _labels(stack) >= len(distinct), timeout=900, what="labels", log=log)

    db = str(stack["db"])
    rows = query(
        db,
        "SELECT arxiv_id, count(*) FROM labels WHERE model_version = %s GROUP BY arxiv_id",
        stack["version"],
    )
    assert {r[0] for r in rows} == distinct
    assert all(r[1] == 1 for r in rows)  # exactly one label row per paper
    view = query(db, "SELECT count(*), count(DISTINCT arxiv_id) FROM latest_labels")
    assert view[0] == (len(distinct), len(distinct))

    messages = read_topic(env, env["ARXIV_STREAM_TOPIC_CLASSIFIED"])
    keys = Counter(key for key, _ in messages)
    assert set(keys) == distinct and max(keys.values()) == 1  # one message per paper
    sample = decode_classified(messages[0][1])
    assert sample.model_version == stack["version"]
    assert sample.domain.label and 0 <= sample.category.score <= 1
    assert sample.category_top_k[0].score >= sample.category_top_k[-1].score

    # ingesting the same feed again publishes and labels nothing new
    again = cli(env, "ingest", "rss", "--file", str(feed)).stdout
    assert "0 new or updated published" in again
    assert _labels(stack) == len(distinct)


def test_new_version_is_labelled_again(stack: dict[str, object], shared_data: Path) -> None:
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    work: Path = stack["work"]  # type: ignore[assignment]
    raw = (shared_data / FEED).read_text()
    first_id = parse_rss(raw.encode())[0].arxiv_id
    bumped = raw.replace(f"arXiv:{first_id}v1 ", f"arXiv:{first_id}v2 ", 1)
    assert bumped != raw
    replay = work / "feed-v2.xml"
    replay.write_text(bumped)
    out = cli(env, "ingest", "rss", "--file", str(replay)).stdout
    assert "1 new or updated published" in out

    db = str(stack["db"])
    log: Path = stack["log"]  # type: ignore[assignment]

    def labelled_v2() -> bool:
        rows = query(db, "SELECT version FROM labels WHERE arxiv_id = %s", first_id)
        return sorted(r[0] for r in rows) == [1, 2]  # type: ignore[type-var]

    wait_for(labelled_v2, timeout=120, what="label of v2", log=log)
    latest = query(db, "SELECT version FROM latest_labels WHERE arxiv_id = %s", first_id)
    assert latest == [(2,)]
    assert query(db, "SELECT version FROM papers WHERE arxiv_id = %s", first_id) == [(2,)]


def test_poison_message_goes_to_dead_letter_while_the_rest_flow(
    stack: dict[str, object], shared_data: Path
) -> None:
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    settings = load_settings(kafka_bootstrap_servers=env["ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS"])
    good = parse_rss((shared_data / FEED).read_bytes())[1]
    good_v9 = good.model_copy(update={"version": 9})

    async def send() -> None:
        async with producer(settings) as kafka:
            await kafka.send_and_wait(env["ARXIV_STREAM_TOPIC_PAPERS"], b"{not json", key="poison")
            await kafka.send_and_wait(
                env["ARXIV_STREAM_TOPIC_PAPERS"],
                orjson.dumps(good_v9.model_dump(mode="json", by_alias=True)),
                key=good.arxiv_id,
            )

    asyncio.run(send())
    db = str(stack["db"])
    log: Path = stack["log"]  # type: ignore[assignment]
    wait_for(
        lambda: (
            query(db, "SELECT 1 FROM labels WHERE arxiv_id=%s AND version=9", good.arxiv_id) != []
        ),
        timeout=120,
        what="the valid message after the poison one",
        log=log,
    )
    dead = read_topic(env, env["ARXIV_STREAM_TOPIC_DEAD_LETTER"])
    assert len(dead) == 1
    key, value = dead[0]
    letter = orjson.loads(value)
    assert key == "poison" and letter["reason"] == "decode" and letter["payload"] == "{not json"
    assert "undecodable" in letter["error"]


def test_tail_and_db_url_for_users(stack: dict[str, object]) -> None:
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    out = cli(env, "tail", "--from-beginning", "--limit", "5", "--idle-exit", "5").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 5 and all(re.match(r"^\S+v\d+\s", line) for line in lines)
    as_json = cli(env, "tail", "--from-beginning", "--limit", "2", "--json").stdout
    assert [orjson.loads(x)["schema"] for x in as_json.splitlines()] == [
        "arxiv-stream.classified/1"
    ] * 2
    url = cli(env, "db", "url").stdout.strip()
    psql = subprocess.run(
        ["psql", url, "-Atc", "SELECT count(*) > 1000 FROM latest_labels"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert psql.stdout.strip() == "t"
