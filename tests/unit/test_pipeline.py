"""The worker's pure core with a stub classifier: decoding, dead letters, dedupe, rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from core.schemas import Paper, encode
from models.predict import Prediction, Scored
from stream.pipeline import RawMessage, classify_batch, label_rows

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class StubClassifier:
    """Predicts cs.LG for everything, and fails on texts containing 'BOOM'."""

    version = "m-test"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
        self.calls.append(len(texts))
        if any("BOOM" in t for t in texts):
            raise RuntimeError("model exploded")
        top = [Scored("cs.LG", 0.9), Scored("stat.ML", 0.05)][:top_k]
        return [
            Prediction(
                domain=Scored("Computer Science", 0.95),
                category=top[0],
                domain_top_k=[Scored("Computer Science", 0.95)],
                category_top_k=top,
                group=Scored("grp_cs", 0.95),
                archive=Scored("cs", 0.93),
                categories=[],
            )
            for _ in texts
        ]


def _msg(
    arxiv_id: str, version: int = 1, title: str = "A title", cats: list[str] | None = None
) -> RawMessage:
    paper = Paper(
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract="An abstract.",
        categories=cats or ["cs.LG"],
        source="rss",
    )
    return RawMessage(key=paper.arxiv_id, value=encode(paper))


def test_batch_classified_in_one_model_call() -> None:
    stub = StubClassifier()
    result = classify_batch(
        [_msg("2411.00001"), _msg("2411.00002", cats=["math.ST", "cs.LG"])],
        stub,
        topic="papers",
        top_k=2,
        clock=lambda: NOW,
    )
    assert stub.calls == [2]
    assert [c.arxiv_id for c in result.classified] == ["2411.00001", "2411.00002"]
    assert [p.arxiv_id for p in result.papers] == ["2411.00001", "2411.00002"]
    first, second = result.classified
    assert first.agrees_with_declared is True
    assert second.agrees_with_declared is False  # declared primary math.ST, predicted cs.LG
    assert first.model_version == "m-test" and first.classified_at == NOW
    assert result.dead_letters == []


def test_poison_messages_become_dead_letters_and_the_rest_flow() -> None:
    stub = StubClassifier()
    poison = RawMessage(key="junk", value=b"\x00not json")
    result = classify_batch(
        [_msg("2411.00001"), poison, _msg("2411.00003", title="BOOM"), _msg("2411.00004")],
        stub,
        topic="papers",
        top_k=5,
        clock=lambda: NOW,
    )
    assert [c.arxiv_id for c in result.classified] == ["2411.00001", "2411.00004"]
    reasons = sorted((d.reason, d.key) for d in result.dead_letters)
    assert reasons == [("classify", "2411.00003"), ("decode", "junk")]
    classify_failure = next(d for d in result.dead_letters if d.reason == "classify")
    assert "model exploded" in classify_failure.error
    assert orjson.loads(classify_failure.payload)["arxiv_id"] == "2411.00003"
    assert stub.calls == [3, 1, 1, 1]  # the batch, then one by one to isolate the culprit


def test_same_paper_twice_in_a_batch_is_classified_once_at_highest_version() -> None:
    result = classify_batch(
        [_msg("2411.00001", 1), _msg("2411.00001", 3), _msg("2411.00001", 2)],
        StubClassifier(),
        topic="papers",
        top_k=5,
        clock=lambda: NOW,
    )
    assert [(c.arxiv_id, c.version) for c in result.classified] == [("2411.00001", 3)]


def test_label_rows_carry_model_version_and_top_k() -> None:
    result = classify_batch(
        [_msg("hep-th/9901001", 2, cats=["hep-th"])],
        StubClassifier(),
        topic="papers",
        top_k=2,
        clock=lambda: NOW,
    )
    (row,) = label_rows(result.classified)
    assert (row.arxiv_id, row.version, row.model_version) == ("hep-th/9901001", 2, "m-test")
    assert row.category == "cs.LG" and row.domain == "Computer Science"
    assert [x["label"] for x in row.top_k["category"]] == ["cs.LG", "stat.ML"]
    assert row.agrees_with_declared is False


def test_vectors_carry_the_bundle_id_and_the_id_of_what_computed_them() -> None:
    """pgvector rows keep the bundle's embedder id (similar papers match across the CPUs that
    served it); the training cache is keyed by the embedder that ran (a bf16 bundle served by
    its fp32 twin), as a retrain on this machine embeds."""
    import numpy as np

    class WithVectors(StubClassifier):
        model_id = "m@ov-bf16"

        class embedder:
            model_id = "m@ov-fp32"

        def predict_with_embeddings(self, texts: Sequence[str], *, top_k: int = 5):  # type: ignore[no-untyped-def]
            return self.predict_texts(texts, top_k=top_k), np.ones((len(texts), 3), np.float32)

    result = classify_batch(
        [_msg("2411.00001")], WithVectors(), topic="p", top_k=2, clock=lambda: NOW
    )
    assert (result.embedder, result.computed_by) == ("m@ov-bf16", "m@ov-fp32")
    assert result.embeddings == [[1.0, 1.0, 1.0]]
