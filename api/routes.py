"""The endpoints. JSON under /api, the page at / (and /papers/<id>), health and metrics."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text

from api import metrics
from api.errors import ApiError
from api.schemas import PaperPage, PaperText, PredictionOut, PredictionsOut, Scored
from core.arxiv_ids import canonical_id
from core.errors import MessageError
from db import reads, repository
from models.predict import Prediction

router = APIRouter()

STATIC_DIR = Path(__file__).parent / "static"

PredictBody = TypeAdapter(PaperText | list[PaperText])


# --- the page -----------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/papers/{arxiv_id:path}", include_in_schema=False)
async def paper_page(arxiv_id: str) -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")  # the page routes on its own URL


# --- health and metrics ---------------------------------------------------------------------


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(request: Request) -> JSONResponse:
    """The database answers and the promoted model is loaded (503 otherwise)."""
    state: dict[str, Any] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        state["database"] = "ok"
    except Exception as exc:
        state["database"] = f"unavailable: {str(exc).splitlines()[0]}"
    try:
        model = await request.app.state.holder.current()
        state["model"] = model.version
    except Exception as exc:
        state["model"] = f"unavailable: {str(exc).splitlines()[0]}"
    ready = state["database"] == "ok" and not str(state["model"]).startswith("unavailable")
    return JSONResponse({"ready": ready, **state}, status_code=200 if ready else 503)


@router.get("/metrics", tags=["operations"])
async def prometheus() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# --- predict ----------------------------------------------------------------------------------


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body too large", f"at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body too large", f"at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _out(version: str, prediction: Prediction, top_k: int) -> PredictionOut:
    return PredictionOut(
        model_version=version,
        domain=Scored(**vars(prediction.domain)),
        category=Scored(**vars(prediction.category)),
        domain_top_k=[Scored(**vars(s)) for s in prediction.domain_top_k[:top_k]],
        category_top_k=[Scored(**vars(s)) for s in prediction.category_top_k[:top_k]],
    )


@router.post(
    "/api/predict",
    response_model=PredictionOut | PredictionsOut,
    tags=["predict"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PredictBody.json_schema()}},
        }
    },
)
async def predict(request: Request) -> PredictionOut | PredictionsOut:
    """Classify one paper ``{title?, abstract, top_k?}``, or a list of up to
    ``API_MAX_PAPERS_PER_CALL`` of them (answered as ``{model_version, predictions}``)."""
    settings = request.app.state.settings
    raw = await _read_capped(request, settings.api_max_body_bytes)
    try:
        body = PredictBody.validate_json(raw)
    except ValidationError as exc:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "invalid request", detail) from None
    papers = body if isinstance(body, list) else [body]
    if not papers:
        raise ApiError(422, "invalid request", "an empty list")
    if len(papers) > settings.api_max_papers_per_call:
        raise ApiError(
            413, "too many papers", f"at most {settings.api_max_papers_per_call} per call"
        )
    version, found = await request.app.state.batcher.predict(
        [p.text for p in papers], top_k=max(p.top_k for p in papers)
    )
    metrics.PREDICTED.inc(len(papers))
    outs = [_out(version, pred, p.top_k) for pred, p in zip(found, papers, strict=True)]
    if isinstance(body, list):
        return PredictionsOut(model_version=version, predictions=outs)
    return outs[0]


# --- browse -----------------------------------------------------------------------------------


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["labelled_at"].isoformat(), row["arxiv_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> reads.Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at, arxiv_id = json.loads(raw)
        return reads.Cursor(datetime.fromisoformat(at), str(arxiv_id))
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid cursor", str(exc)) from None


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | datetime) else v for k, v in row.items()}


def _canonical(arxiv_id: str) -> str:
    try:
        return canonical_id(arxiv_id)
    except MessageError as exc:
        raise ApiError(404, "no such paper", str(exc)) from None


@router.get("/api/papers", response_model=PaperPage, tags=["papers"])
async def list_papers(
    request: Request,
    domain: str | None = None,
    category: str | None = None,
    declared: str | None = None,
    since: date | None = None,
    until: date | None = None,
    disagree: bool = False,
    min_score: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> PaperPage:
    """Labelled papers (``latest_labels``), newest label first, filtered; ``disagree`` with
    ``min_score`` is the moderator's view (confident predictions the declared categories
    do not include). Pass ``next_cursor`` back as ``cursor`` for the next page."""
    filters = reads.PaperFilter(domain, category, declared, since, until, disagree, min_score, q)
    after = _decode_cursor(cursor) if cursor else None
    async with request.app.state.engine.connect() as conn:
        rows = await reads.list_papers(conn, filters, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return PaperPage(
        papers=[_json_row(r) for r in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


@router.get("/api/papers/{arxiv_id:path}/similar", tags=["papers"])
async def similar(
    request: Request, arxiv_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10
) -> dict[str, Any]:
    """The ``k`` papers nearest by embedding (pgvector, HNSW); 501 without pgvector."""
    key = _canonical(arxiv_id)
    async with request.app.state.engine.connect() as conn:
        if not await repository.has_vector_store(conn):
            raise ApiError(
                501,
                "similar papers need pgvector",
                "this database has no `vector` extension (or it could not be created: "
                "that needs a superuser); install pgvector, then run `arxiv-stream db upgrade`",
            )
        found = await reads.similar_papers(conn, key, k)
        if found is None and await reads.get_paper_row(conn, key) is None:
            raise ApiError(404, "no such paper", key)
    if found is None:  # stored, not embedded yet (or labelled by a fine-tuned encoder)
        return {"arxiv_id": key, "similar": [], "embedded": False}
    return {"arxiv_id": key, "similar": [_json_row(r) for r in found], "embedded": True}


@router.get("/api/papers/{arxiv_id:path}", tags=["papers"])
async def paper(request: Request, arxiv_id: str) -> dict[str, Any]:
    """The paper and every label it got, per paper version and model version."""
    key = _canonical(arxiv_id)
    async with request.app.state.engine.connect() as conn:
        row = await reads.get_paper_row(conn, key)
        if row is None:
            raise ApiError(404, "no such paper", key)
        labels = await repository.get_labels(conn, key)
    return {
        "paper": _json_row(row),
        "labels": [_json_row(vars(label)) for label in labels],
    }


@router.get("/api/stats", tags=["papers"])
async def stats(
    request: Request, days: Annotated[int, Query(ge=1, le=3650)] = 30
) -> dict[str, Any]:
    """Per day: labels per domain and agreement with the declared categories; dead letters
    per reason."""
    async with request.app.state.engine.connect() as conn:
        return await reads.daily_stats(conn, days=days)


@router.get("/api/models", tags=["models"])
async def models(request: Request) -> dict[str, Any]:
    """The registry: every version, which one is promoted, its test metrics."""
    async with request.app.state.engine.connect() as conn:
        rows = await repository.list_models(conn)
    promoted = next((r.version for r in rows if r.promoted), None)
    return {
        "promoted": promoted,
        "models": [
            {
                "version": r.version,
                "created_at": r.created_at.isoformat(),
                "promoted": r.promoted,
                "promoted_at": r.promoted_at.isoformat() if r.promoted_at else None,
                "embedder": r.embedder,
                "metrics": (r.metrics or {}).get("test", {}),
                "decision": r.decision,
            }
            for r in rows
        ],
    }
