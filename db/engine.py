"""Database URLs and engines: the one place that turns a URL into connections.

Any PostgreSQL URL is accepted (``postgresql://``, ``postgres://``, ``postgresql+psycopg://``,
``postgresql+asyncpg://``, ...) and rewritten for the one driver we use: psycopg 3, whose
dialect serves both the async engine (the app) and a sync engine (Alembic). It also
understands libpq's unix-socket form ``postgresql://user@/db?host=/socket/dir``, which is
how the embedded server is reached.

Unreachable or refusing database -> ``StorageError``: an engine made by
``create_async_engine_for`` translates driver errors in its ``handle_error`` hook
(``_raise_storage_error``), so every caller gets it however it opens its connection.
Passwords never reach a log or an error message: use ``masked_url`` to show a URL.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from core.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

DRIVER = "postgresql+psycopg"
"""SQLAlchemy dialect+driver for every engine (async for the app, sync for Alembic)."""

_PG_NAMES = {"postgres", "postgresql"}
T = TypeVar("T")


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018  # a non-numeric port raises here, not deep in a driver
    except ArgumentError:
        raise ConfigError(f"not a database URL: {masked_url(url)}") from None
    except ValueError:
        where = url.rsplit("@", 1)[-1]  # no user or password in the message
        raise ConfigError(f"the database URL's port is not a number: ...@{where}") from None
    if parsed.get_backend_name() not in _PG_NAMES:
        raise ConfigError(f"not a PostgreSQL URL: {masked_url(url)}")
    # asyncpg spells TLS as ?ssl=..., libpq (and so psycopg and psql) as ?sslmode=...
    if "ssl" in parsed.query and "sslmode" not in parsed.query:
        query = dict(parsed.query)
        query["sslmode"] = query.pop("ssl")
        parsed = parsed.set(query=query)
    return parsed


def sqlalchemy_url(url: str) -> URL:
    """``url`` for our driver; serves ``create_async_engine`` and ``create_engine`` alike."""
    return _parse(url).set(drivername=DRIVER)


def async_url(url: str) -> str:
    """The SQLAlchemy async URL as a string (password included: never log it)."""
    return sqlalchemy_url(url).render_as_string(hide_password=False)


def psql_url(url: str) -> str:
    """A libpq URL that ``psql`` accepts, e.g. ``postgresql://postgres@/arxiv_stream?host=/dir``.

    Rendered by hand: SQLAlchemy would percent-encode the socket path, which libpq accepts
    but people copying the URL from a log find hard to read.
    """
    parsed = _parse(url)
    userinfo = ""
    if parsed.username:
        userinfo = quote(parsed.username, safe="")
        if parsed.password:
            userinfo += ":" + quote(str(parsed.password), safe="")
        userinfo += "@"
    host = parsed.host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    database = quote(parsed.database or "", safe="")
    query = "&".join(
        f"{quote(key, safe='')}={quote(value, safe='/')}"
        for key, values in parsed.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    )
    return f"postgresql://{userinfo}{host}{port}/{database}" + (f"?{query}" if query else "")


def masked_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``: the only form fit for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def describe_target(url: str) -> str:
    """``database 'x' on host:port`` (or on a socket dir), for messages; no credentials."""
    parsed = _parse(url)
    where = parsed.query.get("host") or parsed.host or "localhost"
    if isinstance(where, tuple):
        where = ",".join(where)
    port = f":{parsed.port}" if parsed.port else ""
    return f"database {parsed.database or '(default)'!r} on {where}{port}"


def _connect_args(parsed: URL, connect_timeout_s: float) -> dict[str, Any]:
    args: dict[str, Any] = {}
    # libpq's minimum is 2 s; the URL wins if it sets its own.
    if "connect_timeout" not in parsed.query:
        args["connect_timeout"] = max(2, math.ceil(connect_timeout_s))
    # Sessions in UTC so every timestamptz comes back as an aware UTC datetime.
    if "options" not in parsed.query:
        args["options"] = "-c timezone=UTC"
    return args


def _raise_storage_error(context: ExceptionContext) -> None:
    """``handle_error`` hook: connection-level driver errors become ``StorageError``.

    psycopg raises ``OperationalError`` for refused/lost connections, admin shutdown,
    cancelled or timed-out statements, and ``InterfaceError`` on a closed connection.
    Programming errors (bad SQL, constraint violations) pass through unchanged. Pre-ping
    failures are left alone so the pool can reconnect quietly.
    """
    if context.is_pre_ping:
        return
    original = context.original_exception
    if isinstance(original, psycopg.OperationalError | psycopg.InterfaceError):
        engine = context.engine
        target = describe_target(masked_url(engine.url)) if engine else "?"
        raise StorageError(f"PostgreSQL unavailable ({target}): {_first_line(original)}") from (
            original
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def create_async_engine_for(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    connect_timeout_s: float = 10.0,
    pooled: bool = True,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine on ``url`` whose connection failures raise ``StorageError``.

    One engine per process; a worker needs few connections (one write per batch), so the
    pool stays small. ``pool_pre_ping`` survives a database restart; ``pool_recycle``
    drops connections that proxies or firewalls may have cut silently. ``pooled=False``
    (NullPool) suits one-off tools and tests that create and drop databases.
    """
    parsed = sqlalchemy_url(url)
    options: dict[str, Any] = {
        "connect_args": _connect_args(parsed, connect_timeout_s),
        "echo": echo,
        "hide_parameters": True,  # abstracts and author lists do not belong in error logs
    }
    if pooled:
        options |= {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_pre_ping": True,
            "pool_recycle": 1800,
        }
    else:
        options["poolclass"] = NullPool
    engine = create_async_engine(parsed, **options)
    event.listen(engine.sync_engine, "handle_error", _raise_storage_error)
    return engine


def sync_engine_for(url: str) -> Engine:
    """A pool-less sync engine (Alembic, one-off admin statements), same error translation."""
    parsed = sqlalchemy_url(url)
    engine = create_engine(
        parsed, poolclass=NullPool, connect_args=_connect_args(parsed, 10.0), hide_parameters=True
    )
    event.listen(engine, "handle_error", _raise_storage_error)
    return engine


async def wait_for_database(url: str, timeout_s: float = 30.0, *, interval_s: float = 0.5) -> None:
    """Start-up step: return once ``select 1`` succeeds, retrying until ``timeout_s``.

    Raises ``StorageError`` naming the host and database (never the password) with the
    driver's last reason, e.g. connection refused or database does not exist.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    engine = create_async_engine_for(url, pooled=False, connect_timeout_s=min(timeout_s, 10.0))
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("select 1"))
                log.info("database reachable: %s", masked_url(url))
                return
            except (StorageError, SQLAlchemyError, OSError) as exc:
                reason = _first_line(exc.__cause__ or exc)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise StorageError(
                        f"PostgreSQL not reachable after {timeout_s:g} s and {attempts} "
                        f"attempts ({describe_target(url)}): {reason}"
                    ) from None
                log.info("waiting for %s: %s", describe_target(url), reason)
                await asyncio.sleep(min(interval_s, remaining))
    finally:
        await engine.dispose()


def run_sync(database_url: str, call: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run one repository call from synchronous code (the command line, batch jobs): a
    short-lived engine, one transaction, disposed after. Not for use inside an event loop."""

    async def _run() -> T:
        engine = create_async_engine_for(database_url)
        try:
            async with engine.begin() as conn:
                return await call(conn)
        finally:
            await engine.dispose()

    return asyncio.run(_run())
