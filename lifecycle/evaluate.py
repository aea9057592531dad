"""Score a registered model version on papers: the ``evaluate`` use case."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from core.schemas import Paper
from lifecycle.registry import Registry
from lifecycle.train import DEFAULTS

SplitPart = Literal["test", "val"]


def select_for_evaluation(
    papers: Iterable[Paper],
    *,
    holdout: bool = False,
    only_split: SplitPart | None = None,
    seed: int = DEFAULTS.seed,
    max_samples: int | None = None,
) -> list[Paper]:
    """The papers to score: all, the fixed holdout only, or one part of the split that
    training with ``seed`` cuts from the same papers (read as training reads them)."""
    from training.data import read_papers, split_papers
    from training.holdout import in_holdout

    chosen = [p for p in papers if not holdout or in_holdout(p.arxiv_id)]
    if only_split is not None:
        data = read_papers(chosen, max_samples=None, show=False)
        parts = split_papers(data, "stratified", val_fraction=0.1, test_fraction=0.1, seed=seed)
        rows = parts.test if only_split == "test" else parts.val
        chosen = [data.papers[i] for i in rows]
    return chosen[:max_samples] if max_samples is not None else chosen


def drop_trained(registry: Registry, version: str, papers: list[Paper]) -> tuple[list[Paper], int]:
    """``papers`` without those ``version`` learnt from (its train and validation ids), and
    how many were dropped: a model scored on its own training papers looks better than it
    is (0.98 on its own training file)."""
    trained = registry.trained_ids(version)
    unseen = [p for p in papers if p.arxiv_id not in trained]
    return unseen, len(papers) - len(unseen)


def evaluate_version(registry: Registry, version: str, papers: list[Paper]) -> dict[str, Any]:
    """Metrics (training.evaluate schema) of ``version`` on ``papers``; embeddings go through
    the shared cache, so a second evaluation of the same papers embeds nothing."""
    from models.cache import EmbeddingCache
    from training.evaluate import evaluate

    classifier = registry.load(version, defer_embedder=True)  # cached texts need no model
    with EmbeddingCache(registry.settings.embedding_cache_dir) as cache:
        metrics = evaluate(classifier, papers, cache=cache)
    metrics["model_version"] = version
    return metrics
