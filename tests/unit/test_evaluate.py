"""Evaluation metrics: golden numbers on a hand-made batch, and the JSON schema end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.schemas import Paper
from models.cache import EmbeddingCache
from models.classifier import PaperClassifier
from models.predict import BatchScores, MultiLabelScores, decode
from tests.unit.test_bundle import make_bundle, synthetic
from training.evaluate import evaluate, evaluate_scores
from training.labels import category_mapping, labels_of

CLASSES = ["cs.LG", "gr-qc", "hep-th", "math.AG", "stat.ML"]
DECLARED = [["cs.LG", "stat.ML"], ["math.AG"], ["hep-th", "gr-qc"], ["q-bio.NC"]]
#                    cs.LG gr-qc hep-th math.AG stat.ML
P_CATEGORY = np.array(
    [
        [0.60, 0.05, 0.05, 0.10, 0.20],  # right
        [0.20, 0.10, 0.10, 0.10, 0.50],  # stat.ML: wrong category/archive, right domain
        [0.05, 0.50, 0.40, 0.03, 0.02],  # gr-qc: wrong primary but declared (precision@1)
        [0.50, 0.10, 0.10, 0.20, 0.10],  # q-bio.NC was never seen in training
    ],
    dtype=np.float32,
)
P_MULTI = np.array(
    [
        [0.9, 0.1, 0.1, 0.1, 0.8],  # {cs.LG, stat.ML}: both right
        [0.1, 0.1, 0.1, 0.7, 0.2],  # {math.AG}: right
        [0.1, 0.2, 0.9, 0.1, 0.1],  # {hep-th}: gr-qc missed
        [0.1, 0.1, 0.1, 0.1, 0.1],  # {}: q-bio.NC missed (unseen label)
    ],
    dtype=np.float32,
)


def hand_made() -> dict:
    labels = [
        labels_of(
            Paper(arxiv_id=f"2411.0000{i}", version=1, title="t", categories=c, source="snapshot")
        )
        for i, c in enumerate(DECLARED)
    ]
    spaces = decode(P_CATEGORY, CLASSES, category_mapping(CLASSES), mode="flat")
    multi = MultiLabelScores(CLASSES, P_MULTI, np.full(5, 0.5, dtype=np.float32))
    return evaluate_scores(BatchScores(spaces, multi), [lab for lab in labels if lab])


def test_golden_metrics() -> None:
    m = hand_made()
    assert m["n"] == 4
    cat = m["category"]
    assert cat["accuracy"] == pytest.approx(1 / 4)
    assert cat["unseen"] == 1
    assert cat["precision_at_1"] == pytest.approx(2 / 4)
    assert cat["top5_micro_recall"] == pytest.approx(5 / 6)  # 6 declared, q-bio.NC not found
    assert cat["top5_accuracy"] == pytest.approx(3 / 4)
    assert m["domain"]["accuracy"] == pytest.approx(3 / 4)  # stat.ML is Mathematics
    assert m["domain"]["unseen"] == 1  # Biology
    assert m["archive"]["accuracy"] == pytest.approx(1 / 4)  # cs only (stat != math, gr-qc)
    assert m["group"]["accuracy"] == pytest.approx(2 / 4)  # grp_stat != grp_math
    # macro F1 over true-or-predicted labels: Biology counts as a class with F1 0
    assert m["domain"]["macro_f1"] == pytest.approx(np.mean([2 / 3, 1.0, 1.0, 0.0]))
    multi = m["categories"]
    assert multi["micro_f1"] == pytest.approx(0.8)  # tp 4, fp 0, fn 2
    assert multi["macro_f1"] == pytest.approx(4 / 6)  # gr-qc and q-bio.NC score 0
    assert multi["unseen_labels"] == 1
    assert multi["mean_predicted"] == pytest.approx(4 / 4)


def test_schema_is_json_and_complete() -> None:
    m = json.loads(json.dumps(hand_made()))
    for space in ("domain", "group", "archive", "category"):
        assert {"n", "accuracy", "macro_f1", "weighted_f1", "top5_accuracy", "unseen"} <= set(
            m[space]
        )
    assert {"precision_at_1", "top5_micro_recall"} <= set(m["category"])
    assert {"micro_f1", "macro_f1"} <= set(m["categories"])


class LookupEmbedder:
    """Stands in for the embedding model: text -> a fixed vector."""

    model_id = "fake/embedder@fp32"
    dim = 16

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls: list[int] = []

    def encode(self, texts):
        self.calls.append(len(texts))
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def test_evaluate_end_to_end_with_a_bundle(tmp_path: Path) -> None:
    make_bundle(tmp_path / "model")
    clf = PaperClassifier.load(tmp_path / "model", with_embedder=False)
    X, primary, declared = synthetic(5, seed=7)
    papers = [
        Paper(
            arxiv_id=f"2411.{i:05d}",
            version=1,
            title=f"paper {i}",
            abstract="x",
            categories=list(declared[i]),
            source="snapshot",
        )
        for i in range(len(primary))
    ]
    papers.append(
        Paper(arxiv_id="2411.99999", version=1, title="none", categories=[], source="snapshot")
    )
    clf.embedder = LookupEmbedder({p.text: X[i] for i, p in enumerate(papers[:-1])})  # type: ignore[assignment]
    with EmbeddingCache(tmp_path / "cache") as cache:
        m = evaluate(clf, papers, cache=cache)
        again = evaluate(clf, papers, cache=cache)
        assert cache.stats.misses == len(primary) and cache.stats.hits == len(primary)
    assert m == again
    assert m["n"] == len(primary) and m["skipped_no_category"] == 1
    assert m["category"]["accuracy"] == 1.0 and m["domain"]["accuracy"] == 1.0
    assert m["category"]["top5_accuracy"] == 1.0 and m["category"]["top5_micro_recall"] > 0.75
    assert m["categories"]["micro_f1"] > 0.9
