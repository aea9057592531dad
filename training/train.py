"""Train a model version from papers or a Kaggle-format snapshot and write its bundle.

    result = train_model("../shared/data/arxiv-sample/arxiv-metadata-sample.jsonl.gz",
                         models_dir=settings.models_dir, cache_dir=settings.embedding_cache_dir)
    result.version, result.path, result.metrics["test"]["domain"]["accuracy"]

Steps: read (papers with an abstract and a category; repeated ids keep the last) -> label
spaces -> split (stratified on the canonical primary category, or by submission date) ->
embed every text through the content cache -> fit heads on train, choose on validation ->
write the bundle to a staging directory -> reload it (the same code path as serving) ->
score validation and test -> metrics.json, report.json, confusion PNGs -> rename into place.

Choices made on validation (recorded in config.json ``decoding`` and metrics ``selection``):
  head       logreg (C from a small grid) vs MLP: best category accuracy ("auto"), or forced;
             then ("auto", "logreg-knn") the best logreg blended with kNN votes over declared
             categories (k, weight from BLEND_GRID) if that scores higher on category
             accuracy + precision@1 + top-5 micro recall (forced with "logreg-knn")
  decoding   top_down vs flat, and the domain from the category marginal vs a direct domain
             head: best validation domain accuracy + category accuracy (ties: top_down, marginal)
The test split is touched once, at the end, for the reported numbers.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.schemas import Paper
from ingest.snapshot import SnapshotSource
from models.bundle import write_metrics
from models.cache import EmbeddingCache, embed_with_cache
from models.classifier import PaperClassifier
from models.embedder import DEFAULT_EMBEDDER, Embedder
from models.registry import new_version_id, publish, staging_dir
from training.bundle_writer import _write_bundle, run_params, score_splits, summarize
from training.data import PaperData, read_papers, split_papers
from training.labels import column
from training.selection import HeadChoice, _fit_heads
from training.splits import Split, SplitKind
from training.tracking import track_run
from training.tuning import tune_softmax_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    """The published bundle directory (``<models_dir>/<version>``)."""
    metrics: dict[str, Any]
    """metrics.json: ``val``/``test`` (training.evaluate schema), ``selection``, ``timing``."""
    test_ids: list[str] = field(default_factory=list)
    """arXiv ids of the held-out test split (also in the bundle's split.json)."""
    val_ids: list[str] = field(default_factory=list)


def train_model(
    papers: Iterable[Paper] | SnapshotSource,
    *,
    models_dir: Path,
    embedder_name: str = DEFAULT_EMBEDDER,
    head: HeadChoice = "auto",
    variant: str = "auto",
    seed: int = 0,
    cache_dir: Path | None = None,
    split: SplitKind = "stratified",
    now: datetime | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    embedder: Embedder | None = None,
    progress: bool | None = None,
    text_head: bool = True,
    tune: int = 0,
    exclude_holdout: bool = False,
) -> TrainResult:
    """Train, evaluate and write one model version under ``models_dir``; see module doc.

    ``papers`` is an iterable of Paper or the path of a Kaggle-format snapshot (read with
    ``ingest.snapshot.read_snapshot``, at most ``max_samples``). ``embedder`` overrides
    ``embedder_name``/``variant``/``device`` (tests reuse one). ``progress`` defaults to
    "stderr is a terminal". ``text_head``: also fit the TF-IDF head and fuse it when
    validation says so. ``tune``: Optuna trials over the softmax head (training.tuning).
    ``exclude_holdout``: drop the fixed evaluation holdout (training.holdout) first.
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    show = sys.stderr.isatty() if progress is None else progress
    version = new_version_id(now)
    seconds: dict[str, float] = {}

    data = read_papers(papers, max_samples=max_samples, show=show, exclude_holdout=exclude_holdout)
    seconds["read"] = time.perf_counter() - started
    parts = split_papers(
        data, split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )

    embedder = embedder or Embedder(
        embedder_name, device=device, variant=variant, batch_size=batch_size
    )
    t0 = time.perf_counter()
    X, embedded = _embed(embedder, [p.text for p in data.papers], cache_dir, show=show)
    seconds["embed"] = time.perf_counter() - t0

    texts = [p.text for p in data.papers]
    t0 = time.perf_counter()
    tuned, tuning = None, None
    if tune:
        tuned, tuning = tune_softmax_head(
            X, column(data.labels, "category"), parts, trials=tune, seed=seed
        )
        seconds["tune"] = time.perf_counter() - t0
    heads, selection = _fit_heads(
        X, data.labels, parts, head=head, seed=seed, show=show,
        texts=texts if text_head else None, tuned=tuned,
    )  # fmt: skip
    if tuning is not None:
        selection["tuning"] = tuning
    seconds["fit"] = time.perf_counter() - t0

    stage = staging_dir(models_dir, version)
    if stage.exists():
        shutil.rmtree(stage)
    summary = summarize(data, parts, seconds) | {
        "embedder_device": embedder.device,
        "texts_embedded": embedded,
        "holdout_excluded": exclude_holdout,
    }
    _write_bundle(stage, version, now, embedder, heads, selection, summary)
    classifier = PaperClassifier.load(stage, with_embedder=False)  # the serving code path
    metrics = score_splits(
        stage, classifier, data.labels, parts, lambda rows: (X[rows], [texts[i] for i in rows])
    )
    metrics["selection"] = selection
    seconds["total"] = time.perf_counter() - started
    metrics["timing"] = {f"{k}_s": round(v, 2) for k, v in seconds.items()} | {
        "texts_embedded": embedded,
        "embed_texts_per_s": round(embedded / seconds["embed"], 1) if embedded else None,
    }
    result = finish_bundle(stage, models_dir, version, metrics, data, parts)
    message = _throughput_line(version, metrics, len(data.papers))
    log.info("trained %s", message)
    if show:
        print(message, file=sys.stderr)
    params = {
        "head": head,
        "category_head": selection["category_head"],
        "variant": embedder.variant,
        "embedder": embedder.model_id,
    }
    track_run(run_params(version, data, parts) | params, metrics, result.path)
    return result


def _embed(
    embedder: Embedder, texts: list[str], cache_dir: Path | None, *, show: bool
) -> tuple[np.ndarray, int]:
    """(embeddings float32 (n, dim), how many texts had to be embedded)."""
    if cache_dir is None:
        return embed_with_cache(embedder, texts, None, show_progress=show), len(texts)
    with EmbeddingCache(cache_dir) as cache:
        X = embed_with_cache(embedder, texts, cache, show_progress=show)
        return X, cache.stats.misses


def finish_bundle(
    stage: Path,
    models_dir: Path,
    version: str,
    metrics: dict[str, Any],
    data: PaperData,
    parts: Split,
) -> TrainResult:
    """metrics.json and split.json into the staging directory, then publish it."""
    write_metrics(stage, metrics)
    keys = [p.arxiv_id for p in data.papers]
    test_ids, val_ids = [keys[i] for i in parts.test], [keys[i] for i in parts.val]
    # train_ids: so a later retrain can compare models on papers neither trained on
    split_file = {
        "summary": parts.summary(),
        "val_ids": val_ids,
        "test_ids": test_ids,
        "train_ids": [keys[i] for i in parts.train],
    }
    (stage / "split.json").write_text(json.dumps(split_file))
    path = publish(models_dir, version)
    return TrainResult(version, path, metrics, test_ids=test_ids, val_ids=val_ids)


def _throughput_line(version: str, metrics: dict[str, Any], n: int) -> str:
    t = metrics["timing"]
    rate = t["embed_texts_per_s"]
    return (
        f"{version}: {n} papers in {t['total_s']:.0f}s (read {t['read_s']:.0f}s, embed "
        f"{t['embed_s']:.0f}s for {t['texts_embedded']} texts"
        + (f" = {rate} texts/s" if rate else ", all cached")
        + f", fit {t['fit_s']:.0f}s); test domain acc {metrics['test']['domain']['accuracy']:.3f}, "
        f"category acc {metrics['test']['category']['accuracy']:.3f}"
    )
