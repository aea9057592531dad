"""Wire schemas: what travels on the Kafka topics. Versioned by the ``schema`` field.

``Paper``            the ingester's unit of work, on ``topic_papers`` (key: arXiv id)
``ClassifiedPaper``  the worker's result, on ``classified-papers`` (key: arXiv id)
``DeadLetter``       a message the worker could not handle, with the reason

Consumers must ignore fields they do not know; a breaking change bumps the ``/N`` suffix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.arxiv_ids import canonical_id
from core.errors import MessageError

PAPER_SCHEMA = "arxiv-stream.paper/1"
CLASSIFIED_SCHEMA = "arxiv-stream.classified/1"
DEAD_LETTER_SCHEMA = "arxiv-stream.dead-letter/1"

Source = Literal["rss", "oai", "snapshot", "relabel"]

# --- input limits (README "Message schema"): a paper beyond them is refused at decode, so
# nothing downstream (PostgreSQL's int4 and text, the broker's 1 MB message limit) can choke.
MAX_VERSION = 2**31 - 1
"""labels.version / papers.version are int4."""
MAX_TITLE_CHARS = 2_000
MAX_ABSTRACT_CHARS = 20_000
"""arXiv caps abstracts at 1,920 characters; ten times that is room for any real one."""
MAX_AUTHORS_CHARS = 200_000
"""Collaboration papers list thousands of authors (ATLAS: ~3,000 names)."""
MAX_FIELD_CHARS = 2_000
"""doi, journal_ref, each category, announce_type."""
MAX_CATEGORIES = 50
MAX_MESSAGE_BYTES = 1_000_000
"""A papers-topic value over this is refused before parsing (Kafka's default limit)."""
MAX_DEAD_LETTER_PAYLOAD_CHARS = 64_000
"""A dead letter keeps at most this much of the original value (plus its size and sha256),
so the dead letter itself always fits the broker's limit."""


_TEXT_FIELDS = ("title", "abstract", "authors", "doi", "journal_ref")

NUL_FREE: Final[dict[str, bool]] = {"nul_free": True}
"""Validation context for a caller that has proven its input holds no U+0000, so the
per-paper scan for it is skipped: ``Paper.model_validate(fields, context=NUL_FREE)``. The
snapshot reader proves it once per raw line (JSON can only spell U+0000 as ``\\u0000``)."""


def _without_nul(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with U+0000 removed from its text fields and categories."""
    cleaned = dict(data)
    for name in _TEXT_FIELDS:
        if isinstance(value := cleaned.get(name), str):
            cleaned[name] = value.replace("\x00", "")
    categories = cleaned.get("categories")
    if isinstance(categories, list):
        cleaned["categories"] = [
            v.replace("\x00", "") if isinstance(v, str) else v for v in categories
        ]
    return cleaned


class Paper(BaseModel):
    """One version of one arXiv paper, as the ingester saw it."""

    model_config = ConfigDict(frozen=True)

    schema_: str = Field(default=PAPER_SCHEMA, alias="schema")
    arxiv_id: str = Field(max_length=64)
    """Canonical id, version stripped: ``2411.17700`` or ``hep-th/9901001``."""
    version: int = Field(ge=1, le=MAX_VERSION)
    """Latest version seen (1 when the source does not say)."""
    title: str = Field(max_length=MAX_TITLE_CHARS)
    abstract: str | None = Field(default=None, max_length=MAX_ABSTRACT_CHARS)
    authors: str | None = Field(default=None, max_length=MAX_AUTHORS_CHARS)
    categories: list[Annotated[str, Field(max_length=MAX_FIELD_CHARS)]] = Field(
        max_length=MAX_CATEGORIES
    )
    """Declared categories, primary first, as arXiv lists them."""
    submitted: datetime | None = None
    """Date of v1 when known (timezone-aware, UTC)."""
    updated: datetime | None = None
    """Date of the latest version or the OAI datestamp when known."""
    doi: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    journal_ref: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    source: Source
    announce_type: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    """RSS only: new, cross, replace, replace-cross."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        """U+0000 is dropped from every text field: PostgreSQL text cannot hold it, and no
        real metadata has it. One validator per paper, not one call per field, and a plain
        loop of ``in`` tests (C speed, no copies). Skipped under ``context=NUL_FREE``."""
        if info.context is NUL_FREE or not isinstance(data, dict):
            return data
        categories = data.get("categories")
        texts = [data.get(name) for name in _TEXT_FIELDS]
        if isinstance(categories, list):
            texts += categories
        for value in texts:
            if isinstance(value, str) and "\x00" in value:
                return _without_nul(data)
        return data

    @field_validator("arxiv_id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return canonical_id(value)

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    @property
    def text(self) -> str:
        """What the model reads: title and abstract (``model_text``)."""
        return model_text(self.title, self.abstract)


class ScoredLabel(BaseModel):
    label: str
    score: float


class ClassifiedPaper(BaseModel):
    """Published once per (paper, version, model version) on ``classified-papers``."""

    schema_: str = Field(default=CLASSIFIED_SCHEMA, alias="schema")
    arxiv_id: str
    version: int
    title: str
    categories: list[str]
    """Declared categories, primary first."""
    domain: ScoredLabel
    """Predicted broad domain (Computer Science, Physics, ...)."""
    category: ScoredLabel
    """Predicted primary arXiv category (canonical name)."""
    domain_top_k: list[ScoredLabel]
    category_top_k: list[ScoredLabel]
    agrees_with_declared: bool | None
    """Predicted category == declared primary (canonical names); None if none declared."""
    model_version: str
    classified_at: datetime


class DeadLetter(BaseModel):
    schema_: str = Field(default=DEAD_LETTER_SCHEMA, alias="schema")
    reason: str
    """``decode``: not a Paper message; ``classify``: the model failed on it."""
    error: str
    source_topic: str
    key: str | None
    payload: str
    """The original value, decoded as UTF-8 with replacement characters; at most
    ``MAX_DEAD_LETTER_PAYLOAD_CHARS`` of it (``payload_truncated``)."""
    failed_at: datetime
    payload_bytes: int | None = None
    """Size of the original value in bytes."""
    payload_sha256: str | None = None
    """sha256 (hex) of the original value: finds it again, even when truncated here."""
    payload_truncated: bool = False


def dead_letter_payload(value: bytes) -> dict[str, object]:
    """The payload fields of a DeadLetter for ``value``: bounded, with size and checksum."""
    import hashlib

    text = value[: MAX_DEAD_LETTER_PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")
    truncated = (
        len(text) > MAX_DEAD_LETTER_PAYLOAD_CHARS or len(value) > MAX_DEAD_LETTER_PAYLOAD_CHARS * 4
    )
    return {
        "payload": text[:MAX_DEAD_LETTER_PAYLOAD_CHARS],
        "payload_bytes": len(value),
        "payload_sha256": hashlib.sha256(value).hexdigest(),
        "payload_truncated": truncated,
    }


T = TypeVar("T")


def model_text(title: str | None, abstract: str | None) -> str:
    """The one text every model reads, in training, the worker, the API and ``predict``:
    ``"<title>. <abstract>"``."""
    return f"{(title or '').strip()}. {(abstract or '').strip()}".strip()


def newest_per_id(items: Iterable[T], paper_of: Callable[[T], Paper] | None = None) -> list[T]:
    """One item per arXiv id: the one with the highest paper version (the first seen wins a
    tie), in first-seen order. ``paper_of`` finds the Paper in an item (default: the item)."""

    def get(item: T) -> Paper:
        found = paper_of(item) if paper_of is not None else item
        assert isinstance(found, Paper), "newest_per_id needs paper_of for non-Paper items"
        return found

    best: dict[str, T] = {}
    for item in items:
        paper = get(item)
        kept = best.get(paper.arxiv_id)
        if kept is None or paper.version > get(kept).version:
            best[paper.arxiv_id] = item
    return list(best.values())


def encode(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="json", by_alias=True))


def decode_paper(raw: bytes | str | dict[str, object]) -> Paper:
    """Parse a papers-topic value; anything else is a MessageError (dead-lettered)."""
    if isinstance(raw, (bytes, str)) and len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(
            f"undecodable paper message: {len(raw):,} bytes, over the "
            f"{MAX_MESSAGE_BYTES:,}-byte limit"
        )
    try:
        data = orjson.loads(raw) if isinstance(raw, (bytes, str)) else raw
        if not isinstance(data, dict):
            raise MessageError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("schema", PAPER_SCHEMA) != PAPER_SCHEMA:
            raise MessageError(f"unknown schema {data.get('schema')!r}")
        return Paper.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError, MessageError) as exc:
        raise MessageError(f"undecodable paper message: {exc}") from exc


def decode_classified(raw: bytes | str) -> ClassifiedPaper:
    try:
        return ClassifiedPaper.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise MessageError(f"undecodable classified message: {exc}") from exc
