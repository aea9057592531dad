"""Metrics of a classifier on labelled papers, as one JSON-able dict.

Schema (every number a float in [0, 1] unless a count):
    {
      "n": papers evaluated, "skipped_no_category": papers without any declared category,
      "domain" | "group" | "archive": {
          "n", "accuracy", "macro_f1", "weighted_f1", "top5_accuracy",
          "unseen": papers whose true label the model cannot output (counted as errors)},
      "category": the same plus
          "precision_at_1"     predicted category is one of the paper's declared ones
          "top5_micro_recall"  share of all declared categories found in the top 5,
      "categories": {"n", "micro_f1", "macro_f1", "unseen_labels", "mean_predicted"} | null
    }
Labels the model never saw in training stay in the denominators: they are errors, counted
in ``unseen``. macro F1 averages over labels that are true or predicted in the data given.

The label-level metrics (``accuracy``, ``precision_at_1``, ``top_labels`` +
``top_k_micro_recall``) are also what training.selection and training.tuning choose by on
validation, so a head is chosen by the numbers it is reported with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import f1_score

from core.schemas import Paper
from models.predict import BatchScores, SpaceScores, top_k_indices
from training.labels import SINGLE_LABEL_SPACES, PaperLabels, labels_of

if TYPE_CHECKING:
    from models.cache import EmbeddingCache
    from models.classifier import PaperClassifier

TOP = 5


def evaluate(
    classifier: PaperClassifier,
    papers: Iterable[Paper],
    *,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Embed ``papers`` (through ``cache`` if given), predict, and score (schema above).
    A fine-tuned encoder reads the texts directly (``cache`` unused)."""
    from models.cache import embed_with_cache

    labelled: list[PaperLabels] = []
    texts: list[str] = []
    skipped = 0
    for paper in papers:
        labels = labels_of(paper)
        if labels is None:
            skipped += 1
            continue
        labelled.append(labels)
        texts.append(paper.text)
    if classifier.reads_text:  # a fine-tuned encoder: no embeddings, nothing to cache
        scores = classifier.score_texts(texts)
    elif classifier.embedder is None:
        raise RuntimeError("evaluate needs a classifier loaded with its embedder")
    else:
        X = embed_with_cache(classifier.embedder, texts, cache)
        scores = classifier.score_embeddings(X, texts=texts)
    metrics = evaluate_scores(scores, labelled)
    metrics["skipped_no_category"] = skipped
    return metrics


def evaluate_scores(scores: BatchScores, labels: Sequence[PaperLabels]) -> dict[str, Any]:
    """Score decoded predictions (``scores``, n rows) against the true ``labels`` (n)."""
    out: dict[str, Any] = {"n": len(labels), "skipped_no_category": 0}
    for space in SINGLE_LABEL_SPACES:
        out[space] = single_label_metrics(scores.spaces[space], [lab.get(space) for lab in labels])
    category = scores.spaces["category"]
    declared = [set(lab.categories) for lab in labels]
    top = top_labels(category.classes, category.probs, TOP)
    out["category"]["precision_at_1"] = precision_at_1(category.predicted_labels(), declared)
    out["category"]["top5_micro_recall"] = top_k_micro_recall(top, declared)
    out["categories"] = None
    if scores.categories is not None:
        out["categories"] = multilabel_metrics(scores, declared)
    return out


def single_label_metrics(space: SpaceScores, truth: Sequence[str]) -> dict[str, Any]:
    """n, accuracy, macro/weighted F1, top-5 accuracy and unseen count for one space."""
    predicted = space.predicted_labels()
    known = set(space.classes)
    top = top_labels(space.classes, space.probs, TOP)
    n = len(truth)
    if n == 0:
        return {
            "n": 0,
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "weighted_f1": 0.0,
            "top5_accuracy": 0.0,
            "unseen": 0,
        }
    return {
        "n": n,
        "accuracy": accuracy(predicted, truth),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(truth, predicted, average="weighted", zero_division=0)),
        "top5_accuracy": float(np.mean([t in row for row, t in zip(top, truth, strict=True)])),
        "unseen": sum(t not in known for t in truth),
    }


def multilabel_metrics(scores: BatchScores, declared: Sequence[set[str]]) -> dict[str, Any]:
    """micro/macro F1 of the thresholded multi-label head against all declared categories."""
    ml = scores.categories
    assert ml is not None
    hits = ml.probs >= ml.thresholds  # (n, L)
    predicted = [{ml.classes[j] for j in np.flatnonzero(row)} for row in hits]
    labels = sorted(set().union(*declared, *predicted)) if declared else []
    index = {label: j for j, label in enumerate(labels)}
    truth_m = np.zeros((len(declared), len(labels)), dtype=bool)
    pred_m = np.zeros_like(truth_m)
    for i, (d, p) in enumerate(zip(declared, predicted, strict=True)):
        truth_m[i, [index[x] for x in d]] = True
        pred_m[i, [index[x] for x in p]] = True
    known = set(ml.classes)
    return {
        "n": len(declared),
        "micro_f1": float(f1_score(truth_m, pred_m, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth_m, pred_m, average="macro", zero_division=0)),
        "unseen_labels": sum(len(d - known) for d in declared),
        "mean_predicted": float(hits.sum(axis=1).mean()) if len(declared) else 0.0,
    }


# --- label-level metrics (also the validation scores of training.selection) -------------------
def top_labels(classes: Sequence[str], probs: np.ndarray, k: int = TOP) -> list[list[str]]:
    """The ``k`` likeliest of ``classes`` for each row of ``probs`` (n, len(classes)), best
    first (ties: column order; models.predict.top_k_indices)."""
    return [[classes[j] for j in row] for row in top_k_indices(probs, k)]


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of rows where ``predicted`` equals ``truth`` (0.0 for no rows)."""
    hits = sum(p == t for p, t in zip(predicted, truth, strict=True))
    return hits / max(len(truth), 1)


def argmax_accuracy(classes: Sequence[str], probs: np.ndarray, truth: Sequence[str]) -> float:
    """Accuracy of the likeliest class of each row of ``probs`` (n, len(classes))."""
    return accuracy([classes[j] for j in probs.argmax(axis=1)], truth)


def precision_at_1(predicted: Sequence[str], declared: Sequence[set[str]]) -> float:
    """Share of rows whose predicted label is one of the row's ``declared`` labels."""
    hits = sum(p in d for p, d in zip(predicted, declared, strict=True))
    return hits / max(len(declared), 1)


def top_k_micro_recall(top: Sequence[Sequence[str]], declared: Sequence[set[str]]) -> float:
    """Share of all ``declared`` labels found among their row's ``top`` (``top_labels``)."""
    found = sum(len(set(t) & d) for t, d in zip(top, declared, strict=True))
    return found / max(sum(len(d) for d in declared), 1)
