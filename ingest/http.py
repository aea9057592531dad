"""The polite arXiv HTTP client: one request at a time, spaced out, retries that back off.

arXiv asks robots for one connection and at most one request every 3 seconds, and answers
overload with ``503`` + ``Retry-After``. So every attempt goes through one ``RateLimiter``,
which also holds back *all* requests of the client while arXiv has asked us to wait::

    ArxivHttpClient.get(url), at most 1 + max_retries attempts:
      limiter.slot()          wait until previous start + interval, and past any deferral
      GET url
        2xx                                        -> the body bytes
        429/5xx with Retry-After (seconds or date) -> limiter.defer(that), try again
        429/5xx, timeout, connection error         -> limiter.defer(full jitter), try again
                                                      full jitter = random() * min(cap, base * 2**n)
        other 4xx, a 3xx left after redirects,
        any other httpx error (bad URL, ...)       -> FetchError at once
      retries spent                                -> FetchError naming the last failure

Only ``core.errors.FetchError`` (a FeedError) leaves this module; no new exception types.
The clock, the sleep and the random source are injected so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import httpx

from core.clock import Monotonic
from core.errors import FetchError
from core.settings import Settings

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

MAX_RESPONSE_BYTES = 50_000_000
"""A body larger than this is refused while it downloads (an arXiv OAI page is ~2-5 MB, the
all-archives RSS feed ~3 MB): memory stays bounded whatever a server sends."""

_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class RateLimiter:
    """At most one request in flight, starts at least ``min_interval_s`` apart.

    ``defer(s)`` pushes the earliest next start to ``s`` seconds from now, for every caller:
    a Retry-After is advice to the client, not to one request.
    """

    def __init__(
        self,
        min_interval_s: float,
        *,
        clock: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last_start = -math.inf
        self._not_before = -math.inf

    def defer(self, seconds: float) -> None:
        self._not_before = max(self._not_before, self._clock() + seconds)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold this while the request runs: it is the "one at a time" part."""
        async with self._lock:
            start_at = max(self._not_before, self._last_start + self.min_interval_s)
            wait = start_at - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._last_start = self._clock()
            yield


def retry_after_s(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: ``"10"`` or an HTTP date; None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class ArxivHttpClient:
    """``async with ArxivHttpClient.from_settings(settings) as client: await client.get(url)``."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        min_interval_s: float = 3.0,
        backoff_base_s: float = 5.0,
        backoff_max_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.backoff_base_s = backoff_base_s
        """First backoff ceiling; doubles per retry (full jitter draws below it)."""
        self.backoff_max_s = backoff_max_s
        self.limiter = RateLimiter(min_interval_s, clock=clock, sleep=sleep)
        self._random = random
        self._http = httpx.AsyncClient(
            headers={"User-Agent": user_agent},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,  # export.arxiv.org/oai2 -> oaipmh.arxiv.org/oai, http -> https
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **injections: Any) -> ArxivHttpClient:
        """The client the settings describe; keyword arguments add to or override them
        (tests inject transport, clock, sleep and random)."""
        configured: dict[str, Any] = {
            "user_agent": settings.user_agent,
            "timeout_s": settings.http_timeout_s,
            "max_retries": settings.http_max_retries,
            "min_interval_s": settings.request_interval_s,
        }
        return cls(**(configured | injections))

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> bytes:
        """The body of a 2xx answer, after up to ``max_retries`` polite retries."""
        attempts = self.max_retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            wait: float | None = None
            response: httpx.Response | None = None
            body = b""
            async with self.limiter.slot():
                try:
                    async with self._http.stream("GET", url, params=params) as streamed:
                        if streamed.is_success:
                            body = await _read_capped(streamed, self.max_response_bytes)
                        response = streamed  # only once the body was read whole
                except _RETRYABLE_ERRORS as exc:
                    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                except httpx.HTTPError as exc:  # bad URL, too many redirects: retrying won't help
                    raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
            if response is not None:
                if response.is_success:
                    return body
                reason = f"HTTP {response.status_code} {response.reason_phrase}"
                if not _retryable(response.status_code):
                    raise FetchError(f"GET {response.url}: {reason}")
                wait = retry_after_s(response.headers.get("Retry-After"), now=_server_now(response))
            if attempt == attempts - 1:
                break
            if wait is None:  # full jitter: random in [0, min(cap, base * 2**attempt))
                wait = self._random() * min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
            log.warning(
                "GET %s: %s; retry %d/%d in %.1f s",
                url,
                reason,
                attempt + 1,
                self.max_retries,
                wait,
            )
            self.limiter.defer(wait)
        raise FetchError(f"GET {url}: gave up after {attempts} attempts; last: {reason}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def _server_now(response: httpx.Response) -> datetime:
    """The server's own clock (Date header) for an HTTP-date Retry-After; ours if absent."""
    try:
        when = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body, refused with a FetchError (not retried: the same URL would send the same)
    as soon as it passes ``limit`` bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError(
            f"GET {response.url}: body of {int(declared):,} bytes over the {limit:,}-byte limit"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise FetchError(f"GET {response.url}: body over the {limit:,}-byte limit; stopped")
        chunks.append(chunk)
    return b"".join(chunks)
