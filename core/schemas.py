"""Wire schemas: what travels on the Kafka topics. Versioned by the ``schema`` field.

``Paper``            the ingester's unit of work, on ``topic_papers`` (key: arXiv id)
``ClassifiedPaper``  the worker's result, on ``classified-papers`` (key: arXiv id)
``DeadLetter``       a message the worker could not handle, with the reason

Consumers must ignore fields they do not know; a breaking change bumps the ``/N`` suffix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.arxiv_ids import canonical_id
from core.errors import MessageError

PAPER_SCHEMA = "arxiv-stream.paper/1"
CLASSIFIED_SCHEMA = "arxiv-stream.classified/1"
DEAD_LETTER_SCHEMA = "arxiv-stream.dead-letter/1"

Source = Literal["rss", "oai", "snapshot", "relabel"]


class Paper(BaseModel):
    """One version of one arXiv paper, as the ingester saw it."""

    model_config = ConfigDict(frozen=True)

    schema_: str = Field(default=PAPER_SCHEMA, alias="schema")
    arxiv_id: str
    """Canonical id, version stripped: ``2411.17700`` or ``hep-th/9901001``."""
    version: int = Field(ge=1)
    """Latest version seen (1 when the source does not say)."""
    title: str
    abstract: str | None = None
    authors: str | None = None
    categories: list[str]
    """Declared categories, primary first, as arXiv lists them."""
    submitted: datetime | None = None
    """Date of v1 when known (timezone-aware, UTC)."""
    updated: datetime | None = None
    """Date of the latest version or the OAI datestamp when known."""
    doi: str | None = None
    journal_ref: str | None = None
    source: Source
    announce_type: str | None = None
    """RSS only: new, cross, replace, replace-cross."""

    @field_validator("arxiv_id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return canonical_id(value)

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    @property
    def text(self) -> str:
        """What the model reads: title and abstract."""
        return f"{self.title.strip()}. {(self.abstract or '').strip()}".strip()


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
    """The original value, decoded as UTF-8 with replacement characters."""
    failed_at: datetime


def encode(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="json", by_alias=True))


def decode_paper(raw: bytes | str | dict[str, object]) -> Paper:
    """Parse a papers-topic value; anything else is a MessageError (dead-lettered)."""
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
