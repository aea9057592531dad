"""The pure core of the worker: decode a batch, classify it, shape rows and messages.

No Kafka, no SQL, no event loop here: the agent calls these and does the I/O, and tests
call them with a stub classifier. The one place that decides what a failure means is
``classify_batch``: undecodable values and papers the model fails on become DeadLetters,
the rest flow on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.errors import MessageError
from core.schemas import (
    ClassifiedPaper,
    DeadLetter,
    Paper,
    ScoredLabel,
    dead_letter_payload,
    decode_paper,
    newest_per_id,
)
from core.taxonomy import canonical_category
from db.repository import LabelRow
from models.predict import Prediction, Scored

log = logging.getLogger(__name__)


class Classifier(Protocol):
    version: str

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]: ...


@dataclass(frozen=True)
class RawMessage:
    key: str | None
    value: bytes


@dataclass
class BatchResult:
    classified: list[ClassifiedPaper] = field(default_factory=list)
    papers: list[Paper] = field(default_factory=list)
    """The papers behind ``classified``, same order (the worker stores them too)."""
    sources: list[RawMessage] = field(default_factory=list)
    """The messages behind ``classified``, same order (for a ``store`` dead letter)."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    embeddings: list[list[float] | None] = field(default_factory=list)
    """The papers' embeddings where the model made them, same order (for similar papers)."""
    embedder: str | None = None
    """The bundle's embedder id (what the heads were trained on): pgvector rows carry it, so
    similar-papers search matches rows across the CPUs that served the bundle."""
    computed_by: str | None = None
    """The id of the embedder that actually ran (a bf16 bundle may be served by its fp32
    twin): the training embedding cache is keyed by it, as a retrain on this machine embeds."""


def _scored(item: Scored) -> ScoredLabel:
    return ScoredLabel(label=item.label, score=round(float(item.score), 6))


def to_classified(
    paper: Paper, prediction: Prediction, *, model_version: str, now: datetime
) -> ClassifiedPaper:
    declared = canonical_category(paper.primary_category) if paper.primary_category else None
    return ClassifiedPaper(
        arxiv_id=paper.arxiv_id,
        version=paper.version,
        title=paper.title,
        categories=list(paper.categories),
        domain=_scored(prediction.domain),
        category=_scored(prediction.category),
        domain_top_k=[_scored(s) for s in prediction.domain_top_k],
        category_top_k=[_scored(s) for s in prediction.category_top_k],
        agrees_with_declared=None if declared is None else prediction.category.label == declared,
        model_version=model_version,
        classified_at=now,
    )


def dead_letter(
    message: RawMessage, *, reason: str, error: Exception | str, topic: str, now: datetime
) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        error=str(error)[:2000],
        source_topic=topic,
        key=message.key[:1000] if message.key else None,
        failed_at=now,
        **dead_letter_payload(message.value),  # type: ignore[arg-type]
    )


def decode_batch(
    messages: Sequence[RawMessage], *, topic: str, now: datetime
) -> tuple[list[tuple[RawMessage, Paper]], list[DeadLetter]]:
    """Split a batch into decodable papers and dead letters. Within one batch a paper that
    appears twice is classified once (its highest version)."""
    decoded: list[tuple[RawMessage, Paper]] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            decoded.append((message, decode_paper(message.value)))
        except MessageError as exc:
            dead.append(dead_letter(message, reason="decode", error=exc, topic=topic, now=now))
    return newest_per_id(decoded, lambda pair: pair[1]), dead


def classify_batch(
    messages: Sequence[RawMessage],
    classifier: Classifier,
    *,
    topic: str,
    top_k: int,
    clock: Callable[[], datetime],
) -> BatchResult:
    """Decode and classify one batch. The model runs once for the whole batch; if it raises,
    each paper is retried alone so one bad input cannot sink its neighbours."""
    now = clock()
    decoded, dead = decode_batch(messages, topic=topic, now=now)
    result = BatchResult(dead_letters=dead)
    if not decoded:
        return result
    texts = [paper.text for _, paper in decoded]
    vectors: list[list[float] | None] = [None] * len(texts)
    try:
        predictions: list[Prediction | Exception]
        with_vectors = getattr(classifier, "predict_with_embeddings", None)
        if with_vectors is not None:  # one embedding pass serves labels and similar papers
            found, X = with_vectors(texts, top_k=top_k)
            predictions = list(found)
            if X is not None:
                vectors = [row.tolist() for row in X]
                result.embedder = getattr(classifier, "model_id", None)
                embedder = getattr(classifier, "embedder", None)
                result.computed_by = getattr(embedder, "model_id", None) or result.embedder
        else:
            predictions = list(classifier.predict_texts(texts, top_k=top_k))
    except Exception:  # the model failed on the batch: find the culprit(s) one by one
        log.exception("batch of %d failed in the model; retrying one by one", len(texts))
        predictions = []
        for text in texts:
            try:
                predictions.append(classifier.predict_texts([text], top_k=top_k)[0])
            except Exception as exc:
                predictions.append(exc)
    for (message, paper), prediction, vector in zip(decoded, predictions, vectors, strict=True):
        if isinstance(prediction, Exception):
            result.dead_letters.append(
                dead_letter(message, reason="classify", error=prediction, topic=topic, now=now)
            )
            continue
        result.classified.append(
            to_classified(paper, prediction, model_version=classifier.version, now=now)
        )
        result.papers.append(paper)
        result.sources.append(message)
        result.embeddings.append(vector)
    return result


def label_rows(classified: Sequence[ClassifiedPaper]) -> list[LabelRow]:
    """Rows for ``labels``: one per (paper, version, model version)."""
    return [
        LabelRow(
            arxiv_id=c.arxiv_id,
            version=c.version,
            model_version=c.model_version,
            domain=c.domain.label,
            domain_score=c.domain.score,
            category=c.category.label,
            category_score=c.category.score,
            top_k={
                "domain": [s.model_dump() for s in c.domain_top_k],
                "category": [s.model_dump() for s in c.category_top_k],
            },
            agrees_with_declared=c.agrees_with_declared,
            labelled_at=c.classified_at,
        )
        for c in classified
    ]
