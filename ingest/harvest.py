"""Fetch loops over the polite client: the RSS feed once, an OAI-PMH list to its end.

They return Papers; storing and publishing them is the caller's job (no Kafka, no DB here)::

    papers = await fetch_rss(client, settings.rss_base_url, settings.categories)

    harvest = OAIHarvest(client, settings.oai_base_url, metadata_prefix="arXivRaw",
                         from_date=saved_checkpoint)
    async for page in harvest.pages():
        store(page.papers)            # and page.deleted_ids
    save(harvest.checkpoint)          # None unless the whole list was read

Checkpoint rule: the next harvest starts from the day of this harvest's FIRST responseDate.
Whatever changed while we were paging is read again next time (days overlap; the store's
upserts are idempotent), so nothing can fall between two harvests.

arXiv's resumptionTokens expire. On ``badResumptionToken`` the list is restarted once from
``from_date`` (pages already yielded come again); a second one is a FetchError.
``noRecordsMatch`` means an empty list: no pages, and the checkpoint stays ``from_date``.

A server that hands out a resumptionToken it already gave in this harvest, or a list longer
than ``max_pages`` (default ``MAX_PAGES``: ~10M records at arXiv's 1,000 per page), ends the
harvest with a FetchError naming the token; the checkpoint is not advanced, so the next
harvest starts from the same day.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime
from typing import Protocol

from core.errors import FetchError, OAIError
from core.schemas import Paper
from ingest.oai import OAIPage, oai_params, parse_oai
from ingest.rss import parse_rss, rss_url

log = logging.getLogger(__name__)

MAX_PAGES = 10_000


class Fetcher(Protocol):
    """What the loops need from ingest.http.ArxivHttpClient."""

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> bytes: ...


async def fetch_rss(client: Fetcher, base_url: str, categories: list[str]) -> list[Paper]:
    """Today's announcements for ``categories`` (one request)."""
    return parse_rss(await client.get(rss_url(base_url, categories)))


class OAIHarvest:
    """One ListRecords harvest. Iterate ``pages()``, then read ``checkpoint``."""

    def __init__(
        self,
        client: Fetcher,
        base_url: str,
        *,
        metadata_prefix: str = "arXivRaw",
        set_spec: str | None = None,
        from_date: date | None = None,
        until: date | None = None,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.max_pages = max_pages
        self.client = client
        self.base_url = base_url
        self.metadata_prefix = metadata_prefix
        self.set_spec = set_spec
        self.from_date = from_date
        self.until = until
        self.checkpoint: date | None = None
        """The next harvest's ``from_date``; set only once ``pages()`` ran to the end."""

    async def pages(self) -> AsyncIterator[OAIPage]:
        """Every page of the list, following resumptionTokens until the last page."""
        self.checkpoint = None
        first_response: datetime | None = None
        token: str | None = None
        restarted = False
        seen_tokens: set[str] = set()
        pages = 0
        while True:
            params = oai_params(
                "ListRecords",
                metadata_prefix=self.metadata_prefix,
                set_spec=self.set_spec,
                from_date=self.from_date,
                until=self.until,
                resumption_token=token,
            )
            try:
                page = parse_oai(await self.client.get(self.base_url, params))
            except OAIError as exc:
                if exc.code == "noRecordsMatch" and token is None:
                    log.info("OAI-PMH: no records match %s", params)
                    self.checkpoint = self.from_date
                    return
                if exc.code != "badResumptionToken" or token is None:
                    raise
                if restarted:
                    raise FetchError(f"OAI-PMH resumptionToken rejected twice: {exc}") from exc
                log.warning("OAI-PMH token %r rejected (%s); restarting the list", token, exc)
                token, restarted = None, True
                seen_tokens.clear()
                continue
            first_response = first_response or page.response_date
            yield page
            pages += 1
            token = page.resumption_token
            if token is None:
                self.checkpoint = first_response.date()
                return
            if token in seen_tokens:
                raise FetchError(
                    f"OAI-PMH server repeated resumptionToken {token!r} after {pages} pages; "
                    "harvest stopped, checkpoint kept"
                )
            if pages >= self.max_pages:
                raise FetchError(
                    f"OAI-PMH list longer than {self.max_pages} pages (last token {token!r}); "
                    "harvest stopped, checkpoint kept"
                )
            seen_tokens.add(token)
