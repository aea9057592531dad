"""Train on 800 real papers end to end: bundle on disk, metrics schema, reload, cache reuse.

Slow (about a minute on 2 CPU cores): it embeds real abstracts. Run with ``-m slow``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.taxonomy import domain_of
from ingest.snapshot import read_snapshot
from models.cache import EmbeddingCache
from models.classifier import PaperClassifier
from models.registry import list_versions
from training.evaluate import evaluate
from training.labels import labels_of
from training.train import train_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow
SPACE_KEYS = {"n", "accuracy", "macro_f1", "weighted_f1", "top5_accuracy", "unseen"}


def test_train_on_real_sample(shared_data: Path, tmp_path: Path) -> None:
    everything = list(read_snapshot(shared_data / "arxiv-sample/arxiv-metadata-sample.jsonl.gz"))
    papers = everything[::6][:800]  # spread over every source and archive of the sample
    models_dir, cache_dir = tmp_path / "models", tmp_path / "cache"
    when = datetime(2026, 11, 21, 23, 5, 1, tzinfo=UTC)

    result = train_model(
        papers,
        models_dir=models_dir,
        head="logreg",
        variant="auto",
        seed=1,
        cache_dir=cache_dir,
        now=when,
        progress=False,
    )

    assert result.path == models_dir / result.version
    assert list_versions(models_dir) == [result.version]
    assert result.version.startswith("m20261121-230501-")
    names = {p.name for p in result.path.iterdir()}
    assert {
        "config.json",
        "metrics.json",
        "report.json",
        "split.json",
        "confusion_domain.png",
        "confusion_archive.png",
    } <= names
    for role in ("category", "domain", "categories"):
        assert {f"{role}.json", f"{role}.safetensors"} <= names
    assert all(p.suffix in {".json", ".safetensors", ".png"} for p in result.path.iterdir())

    metrics = json.loads((result.path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    test = metrics["test"]
    for space in ("domain", "group", "archive", "category"):
        assert set(test[space]) >= SPACE_KEYS, space
        assert test[space]["n"] == len(result.test_ids) > 50
    assert {"precision_at_1", "top5_micro_recall"} <= set(test["category"])
    assert {"micro_f1", "macro_f1"} <= set(test["categories"])

    truth = Counter(labels_of(p).domain for p in papers if p.arxiv_id in set(result.test_ids))
    chance = max(truth.values()) / sum(truth.values())  # always answering the biggest domain
    assert test["domain"]["accuracy"] >= max(0.75, chance + 0.2)
    assert test["category"]["precision_at_1"] > 0.3
    assert test["category"]["top5_micro_recall"] > 0.5

    # the bundle serves on its own, with the variant it was trained on
    config = json.loads((result.path / "config.json").read_text())
    classifier = PaperClassifier.load(result.path, device="cpu")
    assert classifier.embedder_variant == config["embedder"]["variant"]
    held_out = [p for p in papers if p.arxiv_id in set(result.test_ids)]
    for prediction in classifier.predict_texts([p.text for p in held_out[:8]], top_k=5):
        assert prediction.domain.label == domain_of(prediction.category.label)
        assert len(prediction.category_top_k) == 5

    # evaluating the test split again reuses the cache and reproduces the numbers
    with EmbeddingCache(cache_dir) as cache:
        again = evaluate(classifier, held_out, cache=cache)
        assert cache.stats.misses == 0
    assert again["domain"] == test["domain"] and again["category"] == test["category"]

    # a second training run over the same papers embeds nothing
    second = train_model(
        papers,
        models_dir=models_dir,
        head="logreg",
        variant=config["embedder"]["variant"],
        seed=1,
        cache_dir=cache_dir,
        progress=False,
    )
    assert second.metrics["timing"]["texts_embedded"] == 0
    assert second.metrics["test"]["domain"] == test["domain"]
    assert list_versions(models_dir) == sorted([result.version, second.version])
