"""Run one classification worker: ``arxiv-stream worker`` (also started by ``up``).

The command refuses to start when no model is promoted, saying how to make one.
"""

from __future__ import annotations

import logging

import faust

from core.clock import utc_now
from core.metrics_server import serve_metrics
from core.settings import Settings
from db import repository
from db.engine import create_async_engine_for, run_sync
from stream.agent import register_classifier
from stream.app import create_app
from stream.delivery import resend_unpublished
from stream.model_holder import promoted_model_holder

log = logging.getLogger(__name__)


def build_worker(
    settings: Settings, database_url: str, *, web_port: int | None = None
) -> faust.Worker:
    engine = create_async_engine_for(database_url)

    holder = promoted_model_holder(settings, engine)
    app = create_app(settings, web_port=web_port)
    vectors = run_sync(database_url, repository.has_vector_store)
    if not vectors:
        log.info("no pgvector in this database: paper embeddings are not stored")
    register_classifier(
        app, settings, holder=holder, engine=engine, clock=utc_now, store_embeddings=vectors,
        cache_dir=settings.embedding_cache_dir,
    )  # fmt: skip

    classified = app.topic(settings.topic_classified, key_serializer="raw", value_serializer="raw")

    async def send(key: bytes | None, value: bytes) -> object:
        return await classified.send(key=key, value=value)

    async def resend_unpublished_labels() -> None:
        try:
            await resend_unpublished(
                engine, send, now=utc_now(), older_than_s=settings.resend_after_s
            )
        except Exception as exc:  # database or broker away: the next round tries again
            log.error("re-sending unpublished labels failed: %s", exc)

    async def load_model_at_start() -> None:
        # Load before the first batch arrives, so the first batch is not slow.
        await holder.current()

    # Faust's decorators carry no types: registering by call keeps these two functions typed.
    app.timer(interval=settings.resend_interval_s)(resend_unpublished_labels)
    app.task(load_model_at_start)

    return faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )


def run_worker(settings: Settings, database_url: str) -> None:
    """Blocks until SIGINT/SIGTERM. The caller (``arxiv-stream worker``) has checked the
    schema and that a model is promoted, before any broker is looked for."""
    serve_metrics(settings.worker_metrics_port, settings.metrics_host)
    build_worker(settings, database_url).execute_from_commandline()
