"""Run one repository call from synchronous CLI code: engine, transaction, dispose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import create_async_engine_for

T = TypeVar("T")


def run_db(database_url: str, call: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async def _run() -> T:
        engine = create_async_engine_for(database_url)
        try:
            async with engine.begin() as conn:
                return await call(conn)
        finally:
            await engine.dispose()

    return asyncio.run(_run())
