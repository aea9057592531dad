"""Run one classification worker: ``arxiv-stream worker`` (also started by ``up``).

Refuses to start when no model is promoted, with a message that says how to make one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import faust

from core.errors import ModelNotFoundError
from core.settings import Settings
from db import repository
from db.engine import create_async_engine_for
from models.classifier import PaperClassifier
from stream.agent import register_classifier
from stream.app import create_app
from stream.delivery import resend_unpublished
from stream.model_holder import NO_MODEL_HELP, ModelHolder

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def promoted_version(settings: Settings, database_url: str) -> str | None:
    """One-off lookup with its own engine (used before Faust owns the event loop)."""
    engine = create_async_engine_for(database_url)
    try:
        async with engine.connect() as conn:
            row = await repository.promoted_model(conn)
        return row.version if row else None
    finally:
        await engine.dispose()


def build_worker(
    settings: Settings, database_url: str, *, web_port: int | None = None
) -> faust.Worker:
    engine = create_async_engine_for(database_url)

    async def lookup() -> str | None:
        async with engine.connect() as conn:
            row = await repository.promoted_model(conn)
        return row.version if row else None

    def load(path: Path) -> PaperClassifier:
        return PaperClassifier.load(
            path, device=settings.device, batch_size=settings.embed_batch_size
        )

    holder = ModelHolder(
        models_dir=settings.models_dir,
        promoted_version=lookup,
        loader=load,
        poll_interval_s=settings.model_poll_interval_s,
    )
    app = create_app(settings, web_port=web_port)
    register_classifier(app, settings, holder=holder, engine=engine, clock=utc_now)

    classified = app.topic(settings.topic_classified, key_serializer="raw", value_serializer="raw")

    async def send(key: bytes | None, value: bytes) -> object:
        return await classified.send(key=key, value=value)

    @app.timer(interval=settings.resend_interval_s)
    async def resend_unpublished_labels() -> None:
        try:
            await resend_unpublished(
                engine, send, now=utc_now(), older_than_s=settings.resend_after_s
            )
        except Exception as exc:  # database or broker away: the next round tries again
            log.error("re-sending unpublished labels failed: %s", exc)

    @app.task
    async def load_model_at_start() -> None:
        # Load before the first batch arrives, so the first batch is not slow.
        await holder.current()

    return faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )


def run_worker(settings: Settings, database_url: str) -> None:
    """Blocks until SIGINT/SIGTERM."""
    if asyncio.run(promoted_version(settings, database_url)) is None:
        raise ModelNotFoundError(NO_MODEL_HELP)
    build_worker(settings, database_url).execute_from_commandline()
