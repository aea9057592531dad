"""Serve the API with uvicorn (``arxiv-stream serve``; ``up`` runs it as a child)."""

from __future__ import annotations

import logging

from core.settings import Settings

log = logging.getLogger(__name__)


def page_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}/"


def run_api(settings: Settings, database_url: str) -> None:
    """Blocks until SIGINT/SIGTERM."""
    import uvicorn

    from api.app import create_app

    if settings.api_host not in ("127.0.0.1", "localhost", "::1") and settings.api_token is None:
        log.warning(
            "the API listens on %s without API_TOKEN: anyone who reaches it can use it",
            settings.api_host,
        )
    app = create_app(settings, database_url)
    log.info("page and API at %s (OpenAPI docs at %sdocs)", page_url(settings), page_url(settings))
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
