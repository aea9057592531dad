"""The FastAPI app. ``create_app(settings, database_url)`` builds it; ``run_api`` serves it.

Errors have one shape, ``{"error": ..., "detail": ...}``: 401 (token missing or wrong),
404, 413 (body over ``API_MAX_BODY_BYTES``), 422 (missing, empty or invalid input), 501
(similar papers without pgvector), 503 (no promoted model, or the database unreachable).
With ``API_TOKEN`` set, ``/api/*`` and ``/metrics`` ask for ``Authorization: Bearer <token>``;
the page and ``/healthz`` stay open (the page asks its user for the token).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import metrics
from api.errors import ApiError
from api.predict import PredictionBatcher
from api.routes import STATIC_DIR, router
from core.errors import ModelNotFoundError, StorageError
from core.settings import Settings
from db.engine import create_async_engine_for
from stream.model_holder import promoted_model_holder
from stream.pipeline import Classifier

log = logging.getLogger(__name__)

Loader = Callable[[str], Classifier]


def create_app(settings: Settings, database_url: str, *, loader: Loader | None = None) -> FastAPI:
    engine: AsyncEngine = create_async_engine_for(database_url)

    holder = promoted_model_holder(settings, engine, loader=loader)
    batcher = PredictionBatcher(holder.current, max_texts=settings.api_max_papers_per_call)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            await engine.dispose()

    app = FastAPI(
        title="arxiv-stream",
        description="Labels for arXiv papers: predict, browse, similar papers, statistics.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.holder = holder
    app.state.batcher = batcher
    _install_errors(app)
    _install_guards(app, settings)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _error(status: int, error: str, detail: Any = None, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors()]
        return _error(422, "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(ModelNotFoundError)
    async def no_model(request: Request, exc: ModelNotFoundError) -> JSONResponse:
        return _error(503, "no model", str(exc), **{"Retry-After": "30"})

    @app.exception_handler(StorageError)
    async def no_database(request: Request, exc: StorageError) -> JSONResponse:
        return _error(503, "database unavailable", str(exc), **{"Retry-After": "5"})


def _install_guards(app: FastAPI, settings: Settings) -> None:
    secret = settings.api_token.get_secret_value() if settings.api_token else ""
    token = secret.encode() if secret else None  # an empty token is no token

    @app.middleware("http")
    async def guard_and_measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        path = request.url.path
        guarded = path.startswith("/api/") or path == "/metrics"
        if token is not None and guarded:
            given = request.headers.get("authorization", "")
            expected = b"Bearer " + token
            if not hmac.compare_digest(given.encode(), expected):
                response: Response = _error(
                    401, "unauthorized", "send Authorization: Bearer <token>"
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                metrics.observe_request(request.method, "guarded", 401, started)
                return response
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.observe_request(request.method, name, response.status_code, started)
        return response
