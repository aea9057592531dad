"""``arxiv-stream up --replay`` on embedded defaults, as a newcomer runs it: trains a model
from real papers, replays the real all-archives feed, and every distinct paper reaches
``latest_labels`` (via ``psql "$(arxiv-stream db url)"``) and ``classified-papers`` (via
``arxiv-stream tail``). Ctrl-C stops everything; a second ``up`` finds the labels again."""

from __future__ import annotations

import gzip
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from broker.embedded import free_port
from ingest.rss import parse_rss
from tests.integration.stack import base_env, cli, start_cli, wait_for

pytestmark = pytest.mark.integration

FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: pytest resets its mode to 0700, which locks the embedded
    # PostgreSQL (running as its own system user) out of its files.
    path = Path(tempfile.mkdtemp(prefix="arxiv-stream-up-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _psql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", url, "-Atc", sql], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _interrupt(
    process: subprocess.Popen[bytes], timeout: float = 60, signum: int = signal.SIGINT
) -> int:
    process.send_signal(signum)
    return process.wait(timeout)


def test_up_replay_labels_every_paper_and_survives_restart(
    shared_data: Path, data_dir: Path
) -> None:
    snapshot = data_dir / "train.jsonl.gz"
    with gzip.open(shared_data / SAMPLE, "rt") as src, gzip.open(snapshot, "wt") as dst:
        for i, line in enumerate(src):
            if i % 5 == 0:  # every fifth paper: ~1,050 across all archives
                dst.write(line)
    feed = shared_data / FEED
    distinct = {p.arxiv_id for p in parse_rss(feed.read_bytes())}
    api_port = free_port()
    env = base_env(
        ARXIV_STREAM_DATA_DIR=str(data_dir),
        ARXIV_STREAM_MODEL_POLL_INTERVAL_S="2",
        ARXIV_STREAM_API_PORT=str(api_port),
    )
    log = data_dir / "up.log"

    up = start_cli(env, log, "up", "--snapshot", str(snapshot), "--replay", str(feed))
    try:
        wait_for(
            lambda: (data_dir / "run" / "services.json").exists() and up.poll() is None,
            timeout=120,
            what="up to publish its services",
            log=log,
        )
        services = orjson.loads((data_dir / "run" / "services.json").read_bytes())
        url_holder: dict[str, str] = {}

        def labelled() -> bool:
            if "url" not in url_holder:
                url_holder["url"] = cli(env, "db", "url").stdout.strip()
            return _psql(url_holder["url"], "SELECT count(*) FROM latest_labels") == str(
                len(distinct)
            )

        wait_for(labelled, timeout=1200, what="every feed paper in latest_labels", log=log)
        ids = set(_psql(url_holder["url"], "SELECT arxiv_id FROM latest_labels").split())
        assert ids == distinct
        tailed = cli(env, "tail", "--from-beginning", "--json", "--idle-exit", "8").stdout
        messages = [orjson.loads(line) for line in tailed.splitlines()]
        assert {m["arxiv_id"] for m in messages} == distinct
        # the page and API that up started, at the URL it printed
        assert f"arxiv-stream page and API: http://127.0.0.1:{api_port}/" in log.read_text()
        page = httpx.get(f"http://127.0.0.1:{api_port}/api/papers", params={"limit": 5})
        assert page.status_code == 200 and len(page.json()["papers"]) == 5
    finally:
        code = _interrupt(up)
    assert code == 0, log.read_text()[-3000:]
    assert not (data_dir / "run" / "services.json").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes left running after Ctrl-C"
    host, port = services["kafka_bootstrap"].rsplit(":", 1)
    with pytest.raises(OSError):  # the embedded broker is gone too
        socket.create_connection((host, int(port)), timeout=2).close()

    # Restart: the promoted model and the labels are still there (PostgreSQL on disk).
    log = data_dir / "up-again.log"
    up = start_cli(env, log, "up", "--replay", str(feed))
    try:
        wait_for(
            lambda: "progress: papers" in log.read_text(),
            timeout=120,
            what="second up to report progress",
            log=log,
        )
        url = cli(env, "db", "url").stdout.strip()
        assert _psql(url, "SELECT count(*) FROM latest_labels") == str(len(distinct))
    finally:
        # the terminal closed (SIGHUP): a clean stop, the embedded PostgreSQL with it
        assert _interrupt(up, signum=signal.SIGHUP) == 0, log.read_text()[-3000:]
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes left running after SIGHUP"
