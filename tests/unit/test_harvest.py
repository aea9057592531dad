"""fetch_rss and OAIHarvest over the real client and httpx.MockTransport, on a fake clock.

Multi-page lists are made by cutting the real 387-record litpuvn ListRecords page into three
pages with tokens of our own (generated data, real records).
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import FeedError, FetchError, OAIError
from core.settings import Settings
from ingest.harvest import OAIHarvest, fetch_rss
from ingest.http import ArxivHttpClient
from tests.unit.fakes import FakeTime

# Explicit, so a local .env or ARXIV_STREAM_* variables cannot change what is tested.
SETTINGS = Settings(request_interval_s=3.0, http_max_retries=5, user_agent="arxiv-stream-tests/1")
OAI_URL = "https://oaipmh.arxiv.org/oai"
LITPUVN = "oai-pmh/litpuvn-arxiv-oai-harvester-2016/ListRecords_arXivRaw_from-2016-10-20.xml"
MIKE = "oai-pmh/mikesaelim-arXivOAIHarvester-2015"
FROM = date(2016, 10, 20)
FIRST_REQUEST = {"verb": "ListRecords", "metadataPrefix": "arXivRaw", "from": "2016-10-20"}


class Server:
    """Answers each request with the next queued response and keeps the query it saw."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.fake = FakeTime()
        self.starts: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(dict(request.url.params))
        self.paths.append(request.url.path)
        self.starts.append(self.fake.clock())
        return self.answers.pop(0)

    def client(self, **overrides: Any) -> ArxivHttpClient:
        return ArxivHttpClient.from_settings(
            SETTINGS,
            transport=httpx.MockTransport(self),
            clock=self.fake.clock,
            sleep=self.fake.sleep,
            random=lambda: 0.5,
            **overrides,
        )


def ok(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"Content-Type": "text/xml"})


@pytest.fixture(scope="module")
def three_pages(shared_data: Path) -> list[bytes]:
    """The real page cut in three: tokens A|130 and A|260, then an empty token (last page)."""
    text = (shared_data / LITPUVN).read_text()
    records = re.findall(r"<record>.*?</record>", text, flags=re.DOTALL)
    head = text[: text.index("<record>")]
    assert len(records) == 387
    tokens = [
        '<resumptionToken cursor="0" completeListSize="387">A|130</resumptionToken>',
        '<resumptionToken cursor="130" completeListSize="387">A|260</resumptionToken>',
        '<resumptionToken cursor="260" completeListSize="387"/>',
    ]
    pages = []
    for number, (start, token) in enumerate(zip((0, 130, 260), tokens, strict=True)):
        stamped = head.replace("2016-10-21T04:36:53Z", f"2016-10-2{1 + number}T04:36:53Z")
        body = "".join(records[start : start + 130])
        pages.append(f"{stamped}{body}{token}</ListRecords></OAI-PMH>".encode())
    return pages


def _ids(shared_data: Path) -> list[str]:
    text = (shared_data / LITPUVN).read_text()
    return re.findall(r"<identifier>oai:arXiv.org:([^<]+)</identifier>", text)


async def test_fetch_rss_builds_the_url_and_parses(shared_data: Path) -> None:
    feed = (shared_data / "rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml").read_bytes()
    server = Server(ok(feed))
    async with server.client() as client:
        papers = await fetch_rss(client, "https://rss.arxiv.org/rss", ["cs", "math"])
    assert server.paths == ["/rss/cs+math"]
    assert len(papers) == 1504


async def test_fetch_rss_error_feed_is_a_feed_error(shared_data: Path) -> None:
    error = shared_data / "rss/aioarxiv-2024-11-28/rss_error_bad-archive-astroph_2024-11-28.xml"
    server = Server(ok(error.read_bytes()))
    async with server.client() as client:
        with pytest.raises(FeedError, match="Bad archive"):
            await fetch_rss(client, "https://rss.arxiv.org/rss", ["astroph"])


async def test_follows_tokens_to_the_last_page(shared_data: Path, three_pages: list[bytes]) -> None:
    server = Server(*(ok(page) for page in three_pages))
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        pages = []
        async for page in harvest.pages():
            assert harvest.checkpoint is None  # not before the list is done
            pages.append(page)
    assert server.queries == [
        FIRST_REQUEST,
        {"verb": "ListRecords", "resumptionToken": "A|130"},
        {"verb": "ListRecords", "resumptionToken": "A|260"},
    ]
    assert [p.resumption_token for p in pages] == ["A|130", "A|260", None]
    assert [paper.arxiv_id for page in pages for paper in page.papers] == _ids(shared_data)
    # next harvest starts from the FIRST page's responseDate, not the last one's (2016-10-23)
    assert harvest.checkpoint == date(2016, 10, 21)
    assert all(b - a >= 3.0 for a, b in itertools.pairwise(server.starts))


async def test_a_503_between_pages_is_waited_out(
    shared_data: Path, three_pages: list[bytes]
) -> None:
    paperhive = shared_data / "oai-pmh/paperhive-oai-pmh-2018"
    throttled = httpx.Response(
        503,
        content=(paperhive / "ListRecords_arXiv_2015-01-01_2015-01-03_HTTP503.html").read_bytes(),
        headers={"Retry-After": "10"},
    )
    server = Server(ok(three_pages[0]), throttled, ok(three_pages[1]), ok(three_pages[2]))
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        pages = [page async for page in harvest.pages()]
    assert len(pages) == 3
    assert server.fake.sleeps == [3.0, 10.0, 3.0]
    assert (
        server.queries[1]
        == server.queries[2]
        == {"verb": "ListRecords", "resumptionToken": "A|130"}
    )


async def test_no_records_match_is_an_empty_harvest(shared_data: Path) -> None:
    server = Server(ok((shared_data / MIKE / "ErrorResponseNoRecordsMatch.xml").read_bytes()))
    async with server.client() as client:
        harvest = OAIHarvest(
            client, OAI_URL, metadata_prefix="arXivRaw", set_spec="moo", from_date=FROM
        )
        assert [page async for page in harvest.pages()] == []
    assert server.queries == [FIRST_REQUEST | {"set": "moo"}]
    assert harvest.checkpoint == FROM  # nothing read: start from the same day next time


async def test_expired_token_restarts_the_list_once(
    shared_data: Path, three_pages: list[bytes]
) -> None:
    expired = ok((shared_data / MIKE / "ErrorResponseBadResumptionToken.xml").read_bytes())
    server = Server(ok(three_pages[0]), expired, *(ok(page) for page in three_pages))
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        pages = [page async for page in harvest.pages()]
    assert server.queries[2] == FIRST_REQUEST  # the restart: from_date again, no token
    assert len(pages) == 4  # page 1 twice: the store's upserts make that harmless
    assert harvest.checkpoint == date(2016, 10, 21)


async def test_expired_token_twice_is_a_fetch_error(
    shared_data: Path, three_pages: list[bytes]
) -> None:
    expired = ok((shared_data / MIKE / "ErrorResponseBadResumptionToken.xml").read_bytes())
    server = Server(ok(three_pages[0]), expired, ok(three_pages[0]), expired)
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        with pytest.raises(FetchError, match="rejected twice"):
            async for _ in harvest.pages():
                pass
    assert len(server.queries) == 4
    assert harvest.checkpoint is None


async def test_other_oai_errors_propagate(shared_data: Path) -> None:
    server = Server(ok((shared_data / MIKE / "ErrorResponseBadArgument.xml").read_bytes()))
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        with pytest.raises(OAIError) as caught:
            async for _ in harvest.pages():
                pass
    assert caught.value.code == "badArgument"
    assert harvest.checkpoint is None


async def test_stopping_early_sets_no_checkpoint(three_pages: list[bytes]) -> None:
    server = Server(*(ok(page) for page in three_pages))
    async with server.client() as client:
        harvest = OAIHarvest(client, OAI_URL, metadata_prefix="arXivRaw", from_date=FROM)
        async for _ in harvest.pages():
            break
    assert harvest.checkpoint is None
    assert len(server.queries) == 1


async def test_a_repeated_resumption_token_ends_the_harvest_keeping_the_checkpoint(
    three_pages: list[bytes],
) -> None:
    """Issue 8 (7): a server answering the same token forever used to loop without end."""
    server = Server(ok(three_pages[0]), ok(three_pages[1]), ok(three_pages[1]))
    harvest = OAIHarvest(server.client(), OAI_URL, from_date=FROM)
    pages = []
    with pytest.raises(FetchError, match=r"repeated resumptionToken 'A\|260'"):
        async for page in harvest.pages():
            pages.append(page)
    assert len(pages) == 3 and len(server.queries) == 3
    assert harvest.checkpoint is None  # the next harvest starts from FROM again


async def test_a_page_limit_ends_an_endless_list(three_pages: list[bytes]) -> None:
    server = Server(ok(three_pages[0]), ok(three_pages[1]))
    harvest = OAIHarvest(server.client(), OAI_URL, from_date=FROM, max_pages=2)
    with pytest.raises(FetchError, match="longer than 2 pages"):
        async for _ in harvest.pages():
            pass
    assert harvest.checkpoint is None
