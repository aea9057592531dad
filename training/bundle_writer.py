"""Writing the bundle's config and heads, scoring its splits, and its reports."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.bundle import BundleConfig, EmbedderInfo, HeadInfo, write_config
from models.classifier import PaperClassifier
from models.embedder import AnyEmbedder
from training.data import PaperData
from training.evaluate import evaluate_scores
from training.labels import PaperLabels, category_mapping
from training.report import confusion_png, per_class_report
from training.splits import Split


# --- outputs ----------------------------------------------------------------------------------
def write_bundle(
    stage: Path,
    version: str,
    now: datetime,
    embedder: AnyEmbedder,
    heads: dict[str, Any],
    selection: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    for role, fitted in heads.items():
        fitted.save(stage, role)
    info = EmbedderInfo(
        name=embedder.name,
        model_id=embedder.model_id,
        dim=embedder.dim,
        variant=embedder.variant,
        max_seq_length=embedder.max_seq_length,
    )
    config = BundleConfig(
        version=version,
        created_at=now.astimezone(UTC).isoformat(),
        embedder=info,
        heads={role: HeadInfo(file=role, kind=h.kind, role=role) for role, h in heads.items()},
        label_spaces=label_spaces(heads["category"].classes, heads["categories"].classes),
        category_parents=category_mapping(heads["category"].classes),
        decoding=selection["decoding"],
        training=summary,
    )
    write_config(stage, config)


def score_splits(
    stage: Path,
    classifier: PaperClassifier,
    labels: list[PaperLabels],
    parts: Split,
    inputs: Callable[[list[int]], Any],
) -> dict[str, Any]:
    """Score val and test with the reloaded bundle; write the test reports into ``stage``.

    ``inputs(rows)`` gives what the classifier reads for those rows: (embeddings (n, dim),
    texts) or, for a fine-tuned encoder, texts.
    """
    metrics: dict[str, Any] = {"version": classifier.version}
    for name, rows in (("val", parts.val), ("test", parts.test)):
        given = inputs(rows)
        if classifier.reads_text:
            scores = classifier.score_texts(given)
        else:
            X, texts = given
            scores = classifier.score_embeddings(X, texts=texts)
        metrics[name] = evaluate_scores(scores, [labels[i] for i in rows])
        if name == "test":
            write_reports(stage, scores, [labels[i] for i in rows])
    return metrics


def run_params(version: str, data: PaperData, parts: Split) -> dict[str, Any]:
    """Run parameters every trainer reports to experiment tracking."""
    return {
        "version": version,
        "papers": len(data.papers),
        "seed": parts.seed,
        "split": parts.kind,
        "train": len(parts.train),
        "val": len(parts.val),
        "test": len(parts.test),
    }


def label_spaces(categories: list[str], multilabel: list[str]) -> dict[str, list[str]]:
    """config.json ``label_spaces``: the category head's classes, their parents, and the
    multi-label head's classes (``multilabel``; [] without one)."""
    parents = category_mapping(categories)
    spaces = {
        s: sorted({parents[c][s] for c in categories}) for s in ("domain", "group", "archive")
    }
    spaces["category"] = list(categories)
    spaces["categories"] = list(multilabel)
    return spaces


def summarize(data: PaperData, parts: Split, seconds: dict[str, float]) -> dict[str, Any]:
    """The ``training`` section of config.json: what the model was trained on."""
    train_labels = [data.labels[i] for i in parts.train]
    dates = [p.submitted for p in data.papers if p.submitted is not None]
    return {
        "papers": len(data.papers),
        "skipped": data.skipped,
        "split": parts.summary(),
        "stratified_on": "category (canonical primary)" if parts.kind == "stratified" else None,
        "submitted_range": [min(dates).isoformat(), max(dates).isoformat()] if dates else None,
        "train_counts": {
            s: dict(Counter(lab.get(s) for lab in train_labels).most_common())
            for s in ("domain", "archive")
        },
        "train_categories": len({lab.category for lab in train_labels}),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def write_reports(directory: Path, scores: Any, labels: list[PaperLabels]) -> None:
    report = per_class_report(scores, labels)
    (directory / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    for space in ("domain", "archive"):
        confusion_png(
            [lab.get(space) for lab in labels],
            scores.spaces[space].predicted_labels(),
            directory / f"confusion_{space}.png",
            f"{space} (test split, n={len(labels)})",
        )
