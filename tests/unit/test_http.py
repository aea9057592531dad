"""ArxivHttpClient and RateLimiter on a fake clock: spacing, Retry-After, backoff, giving up.

Most tests replay recorded arXiv bodies through httpx.MockTransport; the last ones go
through a real HTTP server on 127.0.0.1 so the TCP path of httpx is exercised too.
No test sleeps for real: the client's sleep is a fake that only moves the fake clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import FetchError
from core.settings import Settings
from ingest.harvest import fetch_rss
from ingest.http import ArxivHttpClient, RateLimiter, retry_after_s
from tests.unit.fakes import FakeTime

# Explicit, so a local .env or ARXIV_STREAM_* variables cannot change what is tested.
SETTINGS = Settings(request_interval_s=3.0, http_max_retries=5, user_agent="arxiv-stream-tests/1")
PAPERHIVE = "oai-pmh/paperhive-oai-pmh-2018"
RSS_FEED = "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml"
OAI_URL = "http://export.arxiv.org/oai2"


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(start=1000.0)


@pytest.fixture(scope="module")
def recorded_503(shared_data: Path) -> tuple[bytes, dict[str, str]]:
    """arXiv's real throttling reply: body and headers as recorded (Retry-After: 10)."""
    index = json.loads((shared_data / PAPERHIVE / "index.json").read_text())
    entry = next(e for e in index if e["status"] == 503)
    return (shared_data / PAPERHIVE / entry["file"]).read_bytes(), entry["headers"]


@pytest.fixture(scope="module")
def recorded_page(shared_data: Path) -> bytes:
    return (shared_data / PAPERHIVE / "ListRecords_arXiv_2015-01-01_2015-01-03.xml").read_bytes()


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler | None, fake: FakeTime, random: float = 0.5, **overrides: Any
) -> ArxivHttpClient:
    transport = httpx.MockTransport(handler) if handler else None
    injections: dict[str, Any] = {
        "transport": transport,
        "clock": fake.clock,
        "sleep": fake.sleep,
        "random": lambda: random,
    }
    return ArxivHttpClient.from_settings(SETTINGS, **(injections | overrides))


def replay(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in order, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


async def test_sends_user_agent_and_params(fake: FakeTime, recorded_page: bytes) -> None:
    handler, seen = replay(httpx.Response(200, content=recorded_page))
    async with make_client(handler, fake) as client:
        body = await client.get(OAI_URL, {"verb": "ListRecords", "metadataPrefix": "arXiv"})
    assert body == recorded_page
    assert seen[0].headers["User-Agent"] == SETTINGS.user_agent
    assert dict(seen[0].url.params) == {"verb": "ListRecords", "metadataPrefix": "arXiv"}
    assert fake.sleeps == []  # the first request waits for nothing


async def test_request_starts_are_at_least_3s_apart(fake: FakeTime) -> None:
    starts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append(fake.clock())
        return httpx.Response(200, content=b"ok")

    async with make_client(handler, fake) as client:
        for _ in range(4):
            await client.get(OAI_URL)
    assert len(starts) == 4
    assert all(later - earlier >= 3.0 for earlier, later in itertools.pairwise(starts))
    assert fake.sleeps == [3.0, 3.0, 3.0]


async def test_interval_and_timeout_come_from_settings(fake: FakeTime) -> None:
    settings = Settings(request_interval_s=7.5, http_timeout_s=12.0, http_max_retries=0)
    handler, _ = replay(httpx.Response(200), httpx.Response(200), httpx.Response(500))
    client = ArxivHttpClient.from_settings(
        settings, transport=httpx.MockTransport(handler), clock=fake.clock, sleep=fake.sleep
    )
    async with client:
        await client.get(OAI_URL)
        await client.get(OAI_URL)
        assert fake.sleeps == [7.5]
        assert client._http.timeout == httpx.Timeout(12.0)
        with pytest.raises(FetchError, match="gave up after 1 attempts"):
            await client.get(OAI_URL)


async def test_concurrent_callers_get_one_request_at_a_time(fake: FakeTime) -> None:
    in_flight, most, starts = 0, 0, []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        starts.append(fake.clock())
        await asyncio.sleep(0)  # let the other callers try to barge in
        in_flight -= 1
        return httpx.Response(200, content=b"ok")

    async with make_client(handler, fake) as client:  # type: ignore[arg-type]
        await asyncio.gather(*(client.get(OAI_URL) for _ in range(3)))
    assert most == 1
    assert starts == [1000.0, 1003.0, 1006.0]


async def test_rate_limiter_alone_with_a_slow_first_request(fake: FakeTime) -> None:
    limiter = RateLimiter(3.0, clock=fake.clock, sleep=fake.sleep)
    async with limiter.slot():
        fake.now += 5.0  # the request itself took 5 s
    async with limiter.slot():
        pass
    assert fake.sleeps == []  # 3 s had passed since the first start already


async def test_503_retry_after_is_honoured(
    fake: FakeTime,
    recorded_503: tuple[bytes, dict[str, str]],
    recorded_page: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, headers = recorded_503
    assert headers["Retry-After"] == "10"
    handler, seen = replay(
        httpx.Response(503, content=body, headers=headers),
        httpx.Response(200, content=recorded_page),
    )
    with caplog.at_level(logging.WARNING, logger="ingest.http"):
        async with make_client(handler, fake) as client:
            assert await client.get(OAI_URL) == recorded_page
    assert len(seen) == 2
    assert fake.sleeps == [10.0]
    assert "HTTP 503" in caplog.text and "in 10.0 s" in caplog.text


async def test_retry_after_as_http_date_is_read_against_the_server_clock(fake: FakeTime) -> None:
    headers = {
        "Date": "Thu, 21 Jun 2018 14:30:51 GMT",
        "Retry-After": "Thu, 21 Jun 2018 14:31:11 GMT",
    }
    handler, _ = replay(httpx.Response(503, headers=headers), httpx.Response(200, content=b"ok"))
    async with make_client(handler, fake) as client:
        await client.get(OAI_URL)
    assert fake.sleeps == [20.0]


async def test_429_backs_off_exponentially_with_jitter(fake: FakeTime) -> None:
    handler, seen = replay(
        httpx.Response(429), httpx.Response(429), httpx.Response(429), httpx.Response(200)
    )
    async with make_client(handler, fake, random=0.8, backoff_base_s=5.0) as client:
        await client.get(OAI_URL)
    assert len(seen) == 4
    assert fake.sleeps == pytest.approx([4.0, 8.0, 16.0])  # 0.8 * 5 * 2**n


async def test_backoff_is_capped_and_never_beats_the_interval(fake: FakeTime) -> None:
    handler, _ = replay(*[httpx.Response(500)] * 4, httpx.Response(200))
    async with make_client(handler, fake, random=0.8, backoff_max_s=6.0) as client:
        await client.get(OAI_URL)
    # 0.8 * min(6, 5 * 2**n) = 4, 4.8, 4.8, 4.8; and a zero draw would still wait 3 s
    assert fake.sleeps == pytest.approx([4.0, 4.8, 4.8, 4.8])
    handler, _ = replay(httpx.Response(502), httpx.Response(200))
    async with make_client(handler, fake, random=0.0) as client:
        fake.sleeps.clear()
        await client.get(OAI_URL)
    assert fake.sleeps == [3.0]


async def test_timeouts_and_connection_errors_are_retried(fake: FakeTime) -> None:
    handler, seen = replay(
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(200, content=b"finally"),
    )
    async with make_client(handler, fake) as client:
        assert await client.get(OAI_URL) == b"finally"
    assert len(seen) == 4 and len(fake.sleeps) == 3


async def test_gives_up_after_max_retries(fake: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    handler, seen = replay(*[httpx.Response(503)] * 10)
    with caplog.at_level(logging.WARNING, logger="ingest.http"):
        async with make_client(handler, fake, max_retries=3) as client:
            with pytest.raises(FetchError, match=r"gave up after 4 attempts.*HTTP 503"):
                await client.get(OAI_URL)
    assert len(seen) == 4
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


async def test_gives_up_on_endless_timeouts(fake: FakeTime) -> None:
    handler, seen = replay(*[httpx.ConnectTimeout("slow")] * 6)
    async with make_client(handler, fake) as client:  # Settings: http_max_retries = 5
        with pytest.raises(FetchError, match="ConnectTimeout"):
            await client.get(OAI_URL)
    assert len(seen) == 6


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_other_4xx_fail_at_once(fake: FakeTime, status: int) -> None:
    handler, seen = replay(httpx.Response(status), httpx.Response(200))
    async with make_client(handler, fake) as client:
        with pytest.raises(FetchError, match=f"HTTP {status}"):
            await client.get(OAI_URL)
    assert len(seen) == 1 and fake.sleeps == []


async def test_redirects_are_followed(fake: FakeTime) -> None:
    """export.arxiv.org/oai2 answers with a redirect to oaipmh.arxiv.org/oai."""
    moved = httpx.Response(301, headers={"Location": "https://oaipmh.arxiv.org/oai?verb=Identify"})
    handler, seen = replay(moved, httpx.Response(200, content=b"identify"))
    async with make_client(handler, fake) as client:
        assert await client.get(OAI_URL, {"verb": "Identify"}) == b"identify"
    assert [str(r.url) for r in seen][-1] == "https://oaipmh.arxiv.org/oai?verb=Identify"


async def test_unusable_urls_fail_at_once_as_fetch_error(fake: FakeTime) -> None:
    async with make_client(None, fake) as client:
        with pytest.raises(FetchError, match="UnsupportedProtocol"):
            await client.get("ftp://export.arxiv.org/oai2")
    assert fake.sleeps == []


def test_retry_after_parsing() -> None:
    now = datetime(2018, 6, 21, 14, 30, 51, tzinfo=UTC)
    assert retry_after_s("10", now=now) == 10.0
    assert retry_after_s(" 0 ", now=now) == 0.0
    assert retry_after_s("Thu, 21 Jun 2018 14:31:01 GMT", now=now) == 10.0
    assert retry_after_s("Thu, 21 Jun 2018 14:00:00 GMT", now=now) == 0.0  # in the past
    assert retry_after_s("soon", now=now) is None
    assert retry_after_s(None, now=now) is None


# --- through a real socket ----------------------------------------------------------------


# framing, Date and Server are the local server's own business
_OWN_HEADERS = {"content-length", "transfer-encoding", "connection", "date", "server"}


class _Recorded(BaseHTTPRequestHandler):
    """Replays recorded arXiv answers: the RSS feed, and OAI with one 503 first."""

    routes: dict[str, list[tuple[int, dict[str, str], bytes]]]
    user_agents: list[str]

    def do_GET(self) -> None:
        self.user_agents.append(self.headers.get("User-Agent", ""))
        answers = self.routes[self.path.split("?")[0]]
        status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in _OWN_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_arxiv(
    shared_data: Path, recorded_503: tuple[bytes, dict[str, str]], recorded_page: bytes
) -> Iterator[tuple[str, type[_Recorded]]]:

    class Handler(_Recorded):  # fresh class state per test
        user_agents: list[str] = []  # noqa: RUF012
        routes = {  # noqa: RUF012
            "/rss/astro-ph+cs": [(200, {}, (shared_data / RSS_FEED).read_bytes())],
            "/oai2": [
                (503, recorded_503[1], recorded_503[0]),
                (200, {"Content-Type": "text/xml"}, recorded_page),
            ],
        }

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_real_socket_503_then_page(
    fake: FakeTime, local_arxiv: tuple[str, type[_Recorded]], recorded_page: bytes
) -> None:
    base, handler = local_arxiv
    async with make_client(None, fake) as client:
        body = await client.get(f"{base}/oai2", {"verb": "ListRecords", "metadataPrefix": "arXiv"})
    assert body == recorded_page
    assert fake.sleeps == [10.0]
    assert handler.user_agents == [SETTINGS.user_agent] * 2


async def test_real_socket_rss_feed(
    fake: FakeTime, local_arxiv: tuple[str, type[_Recorded]]
) -> None:
    base, _ = local_arxiv
    async with make_client(None, fake) as client:
        papers = await fetch_rss(client, f"{base}/rss", ["astro-ph", "cs"])
    assert len(papers) == 1504


async def test_real_socket_connection_refused_gives_up(fake: FakeTime) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_client(None, fake, max_retries=2) as client:
        with pytest.raises(FetchError, match=r"gave up after 3 attempts.*ConnectError"):
            await client.get(f"http://127.0.0.1:{port}/oai2")
    assert len(fake.sleeps) == 2


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_over_the_size_cap_is_refused_while_it_downloads(
    fake: FakeTime, declared: bool
) -> None:
    """Issue 8 (7): a 100 MB feed used to cost 660 MB; an endless one had no bound."""
    body = b"<rss>" + b"x" * 5000

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=body)
        return httpx.Response(200, stream=httpx.ByteStream(body))  # no Content-Length

    client = make_client(handler, fake, max_response_bytes=1000)
    with pytest.raises(FetchError, match="1,000-byte limit"):
        await client.get("https://rss.arxiv.org/rss/cs")
    small = make_client(lambda r: httpx.Response(200, content=b"<rss/>"), fake)
    assert await small.get("https://rss.arxiv.org/rss/cs") == b"<rss/>"
