"""Request and response bodies of the API (OpenAPI at /docs is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.schemas import MAX_ABSTRACT_CHARS, MAX_TITLE_CHARS, model_text

MAX_TOP_K = 20


class PaperText(BaseModel):
    """One paper to classify: its abstract (required) and title."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=MAX_TITLE_CHARS)
    abstract: str = Field(max_length=MAX_ABSTRACT_CHARS)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)

    @field_validator("abstract")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("abstract is empty")
        return value

    @property
    def text(self) -> str:
        """The text the models read (core.schemas.model_text, as everywhere else)."""
        return model_text(self.title, self.abstract)


class Scored(BaseModel):
    label: str
    score: float


class PredictionOut(BaseModel):
    model_version: str
    domain: Scored
    category: Scored
    domain_top_k: list[Scored]
    category_top_k: list[Scored]


class PredictionsOut(BaseModel):
    model_version: str
    predictions: list[PredictionOut]


class PaperPage(BaseModel):
    papers: list[dict[str, Any]]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


class ErrorOut(BaseModel):
    error: str
    detail: Any = None
