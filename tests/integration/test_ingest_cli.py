"""``arxiv-stream ingest rss|oai --base-url`` over real HTTP against a local server replaying
recorded arXiv responses: papers stored, published, the OAI checkpoint taken from the
server's responseDate, and a second poll publishing nothing new."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.stack import cli, query, read_topic, worker_env

pytestmark = pytest.mark.integration

OAI_PAGE = "oai-pmh/paperhive-oai-pmh-2018/ListRecords_arXiv_2015-01-01_2015-01-03.xml"
RSS_FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"


@pytest.fixture
def arxiv_server(shared_data: Path) -> Iterator[tuple[str, list[str]]]:
    """Serves the recorded OAI page at /oai and the recorded feed under /rss/."""
    requests: list[str] = []

    class Replay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            name = OAI_PAGE if self.path.startswith("/oai") else RSS_FEED
            body = (shared_data / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_ingest_oai_and_rss_over_http(
    arxiv_server: tuple[str, list[str]],
    kafka_bootstrap: str,
    pg_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    base, requests = arxiv_server
    db = pg_database()
    env = worker_env(tmp_path, db, kafka_bootstrap) | {
        "ARXIV_STREAM_REQUEST_INTERVAL_S": "0",
        "ARXIV_STREAM_OAI_SETS": "cs,physics:hep-th",
    }
    out = cli(env, "ingest", "oai", "--base-url", f"{base}/oai", "--from", "2015-01-01").stdout
    # two sets, the same recorded page (2 records) served for each: stored once
    assert "4 papers seen, 2 new or updated published" in out
    assert len(requests) == 2 and "set=cs" in requests[0] and "from=2015-01-01" in requests[0]
    assert "set=physics%3Ahep-th" in requests[1]
    ids = {r[0] for r in query(db, "SELECT arxiv_id FROM papers")}
    assert ids == {"1412.8544", "hep-th/9504118"}
    checkpoints = dict(query(db, "SELECT source, value FROM ingest_checkpoints"))
    # the next harvest starts from the server's responseDate (2018-06-21), not our clock
    assert checkpoints == {
        "oai:arXivRaw:cs": "2018-06-21",
        "oai:arXivRaw:physics:hep-th": "2018-06-21",
    }
    again = cli(env, "ingest", "oai", "--base-url", f"{base}/oai").stdout
    assert "0 new or updated published" in again
    assert "from=2018-06-21" in requests[-1]

    rss = cli(env, "ingest", "rss", "--base-url", f"{base}/rss", "--categories", "cs+math")
    assert requests[-1] == "/rss/cs+math"
    assert "1504 papers seen" in rss.stdout
    published = read_topic(env, env["ARXIV_STREAM_TOPIC_PAPERS"])
    assert len(published) == len({k for k, _ in published}) == 2 + 1504  # OAI pair + feed
