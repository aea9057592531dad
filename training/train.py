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
The test split is touched once, at the end, for the reported numbers. A retrain passes
``warm_from`` (the promoted bundle): where training.warm says it applies, the incumbent's
chosen heads are refitted from its weights instead of choosing among the grid.

Shared with training.finetune (the other trainer): ``TrainResult``, ``TrainingRun`` (version,
progress, step timings), ``read_and_split``, ``fresh_stage`` and ``finish_bundle``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError
from core.schemas import Paper
from ingest.snapshot import SnapshotSource
from models.bundle import read_config, write_metrics
from models.cache import EmbeddingCache, embed_with_cache
from models.classifier import PaperClassifier, serving_variant
from models.device import resolve_device
from models.embedder import (
    DEFAULT_EMBEDDER,
    AnyEmbedder,
    DeferredEmbedder,
    Embedder,
    canonical_name,
)
from models.heads import StoredHead
from models.registry import new_version_id, publish, staging_dir
from training.bundle_writer import run_params, score_splits, summarize, write_bundle
from training.data import PaperData, read_papers, split_papers
from training.labels import column
from training.selection import HeadChoice, fit_heads
from training.splits import Split, SplitKind
from training.tracking import track_run
from training.tuning import tune_softmax_head
from training.warm import WarmStart, load_warm_start, refit_heads

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
    embedder: AnyEmbedder | None = None,
    progress: bool | None = None,
    text_head: bool = True,
    tune: int = 0,
    exclude_holdout: bool = False,
    warm_from: Path | None = None,
) -> TrainResult:
    """Train, evaluate and write one model version under ``models_dir``; see module doc.

    ``papers`` is an iterable of Paper or the path of a Kaggle-format snapshot (read with
    ``ingest.snapshot.read_snapshot``, at most ``max_samples``). ``embedder`` overrides
    ``embedder_name``/``variant``/``device`` (tests reuse one). ``progress`` defaults to
    "stderr is a terminal". ``text_head``: also fit the TF-IDF head and fuse it when
    validation says so. ``tune``: Optuna trials over the softmax head (training.tuning).
    ``exclude_holdout``: drop the fixed evaluation holdout (training.holdout) first.
    ``warm_from``: an earlier bundle (the incumbent) whose choices and weights to refit
    from, where training.warm says they apply (else a cold train, the log says why).
    """
    run = TrainingRun.start(now, progress)
    data, parts = read_and_split(
        papers, run, split=split, seed=seed, max_samples=max_samples,
        val_fraction=val_fraction, test_fraction=test_fraction, exclude_holdout=exclude_holdout,
    )  # fmt: skip
    chosen: AnyEmbedder | None = embedder
    if chosen is None and warm_from is not None and variant == "auto":
        chosen = _incumbents_embedder(warm_from, embedder_name, device, batch_size)
    if chosen is None:
        chosen = Embedder(embedder_name, device=device, variant=variant, batch_size=batch_size)
    embedder = chosen
    texts = [p.text for p in data.papers]
    with run.timed("embed"):
        X, embedded = _embed(embedder, texts, cache_dir, show=run.show)
    warm = None
    if warm_from is not None and not tune:
        warm, why = load_warm_start(
            warm_from, embedder_name=embedder.name, dim=embedder.dim,
            train_rows=len(parts.train), head=head,
        )  # fmt: skip
        log.info("%s retrain: %s", "warm" if warm else "cold", why)
    heads, selection = _fit(
        X, data, parts, run,
        head=head, seed=seed, tune=tune, texts=texts if text_head else None, warm=warm,
    )  # fmt: skip
    stage = fresh_stage(models_dir, run.version)
    summary = summarize(data, parts, run.seconds) | {
        "embedder_device": embedder.device,
        "texts_embedded": embedded,
        "holdout_excluded": exclude_holdout,
    }
    write_bundle(stage, run.version, run.now, embedder, heads, selection, summary)
    metrics = _score(stage, X, texts, data, parts)
    metrics["selection"] = selection
    metrics["timing"] = run.timing() | {
        "texts_embedded": embedded,
        "embed_texts_per_s": round(embedded / run.seconds["embed"], 1) if embedded else None,
    }
    result = finish_bundle(stage, models_dir, run.version, metrics, data, parts)
    message = _throughput_line(run.version, metrics, len(data.papers))
    log.info("trained %s", message)
    if run.show:
        print(message, file=sys.stderr)
    params = {
        "head": head,
        "category_head": selection["category_head"],
        "variant": embedder.variant,
        "embedder": embedder.model_id,
    }
    track_run(run_params(run.version, data, parts) | params, metrics, result.path)
    return result


# --- steps shared with training.finetune ------------------------------------------------------
@dataclass
class TrainingRun:
    """One trainer run: its clock (``now``, which names the version), whether it shows
    progress, and the seconds of its steps (config.json ``training.seconds``, metrics.json
    ``timing``)."""

    now: datetime
    version: str
    show: bool
    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, now: datetime | None, progress: bool | None) -> TrainingRun:
        """``now`` defaults to the current time; ``progress`` to "stderr is a terminal"."""
        now = now or datetime.now(UTC)
        show = sys.stderr.isatty() if progress is None else progress
        return cls(now, new_version_id(now), show)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the seconds the ``with`` block takes as ``seconds[step]``."""
        t0 = time.perf_counter()
        yield
        self.seconds[step] = time.perf_counter() - t0

    def timing(self) -> dict[str, float]:
        """``{"<step>_s": seconds}`` rounded, ``total_s`` (since the start) last: the run ends."""
        self.seconds["total"] = time.perf_counter() - self.started
        return {f"{k}_s": round(v, 2) for k, v in self.seconds.items()}


def read_and_split(
    papers: Iterable[Paper] | SnapshotSource,
    run: TrainingRun,
    *,
    split: SplitKind,
    seed: int,
    max_samples: int | None,
    val_fraction: float,
    test_fraction: float,
    exclude_holdout: bool = False,
) -> tuple[PaperData, Split]:
    """The labelled papers (timed as ``read``) and their train/val/test split."""
    with run.timed("read"):
        data = read_papers(
            papers, max_samples=max_samples, show=run.show, exclude_holdout=exclude_holdout
        )
    parts = split_papers(
        data, split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return data, parts


def fresh_stage(models_dir: Path, version: str) -> Path:
    """The staging directory of ``version``, with whatever a failed run left there removed."""
    stage = staging_dir(models_dir, version)
    if stage.exists():
        shutil.rmtree(stage)
    return stage


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


# --- steps of train_model ---------------------------------------------------------------------
def _embed(
    embedder: AnyEmbedder, texts: list[str], cache_dir: Path | None, *, show: bool
) -> tuple[np.ndarray, int]:
    """(embeddings float32 (n, dim), how many texts had to be embedded)."""
    if cache_dir is None:
        return embed_with_cache(embedder, texts, None, show_progress=show), len(texts)
    with EmbeddingCache(cache_dir) as cache:
        X = embed_with_cache(embedder, texts, cache, show_progress=show)
        return X, cache.stats.misses


def _incumbents_embedder(
    model_dir: Path, name: str, device: str, batch_size: int | None
) -> DeferredEmbedder | None:
    """The incumbent's embedder as it is served on this machine (``serving_variant``: the
    worker's variant, so the vectors the worker cached are hits), loaded only if some text
    is not cached. None (choose afresh) when the incumbent reads another model or has no
    embedder."""
    try:
        config = read_config(model_dir)
    except (ModelError, OSError):
        return None
    info = config.embedder
    if info is None or info.name != canonical_name(name):
        return None
    resolved = resolve_device(device)
    variant = serving_variant(info.variant, resolved, config.version)
    return DeferredEmbedder(
        info.name, variant=variant, dim=info.dim, max_seq_length=info.max_seq_length,
        device=resolved, batch_size=batch_size,
    )  # fmt: skip


def _fit(
    X: np.ndarray,
    data: PaperData,
    parts: Split,
    run: TrainingRun,
    *,
    head: HeadChoice,
    seed: int,
    tune: int,
    texts: list[str] | None,
    warm: WarmStart | None = None,
) -> tuple[dict[str, StoredHead], dict[str, Any]]:
    """Tune the softmax head (``tune`` trials, timed as ``tune``), then fit the heads on train
    and choose on validation (timed as ``fit``, tuning included): (heads, selection).
    With ``warm``: the incumbent's heads refitted from its weights instead (training.warm)."""
    if warm is not None:
        with run.timed("fit"):
            return refit_heads(X, data.labels, parts, warm, seed=seed, show=run.show, texts=texts)
    with run.timed("fit"):
        tuned, tuning = None, None
        if tune:
            with run.timed("tune"):
                y = column(data.labels, "category")
                tuned, tuning = tune_softmax_head(X, y, parts, trials=tune, seed=seed)
        heads, selection = fit_heads(
            X, data.labels, parts, head=head, seed=seed, show=run.show, texts=texts, tuned=tuned
        )
        if tuning is not None:
            selection["tuning"] = tuning
    return heads, selection


def _score(
    stage: Path, X: np.ndarray, texts: list[str], data: PaperData, parts: Split
) -> dict[str, Any]:
    """val and test metrics of the bundle in ``stage``, reloaded as serving loads it."""
    classifier = PaperClassifier.load(stage, with_embedder=False)  # the serving code path
    return score_splits(
        stage, classifier, data.labels, parts, lambda rows: (X[rows], [texts[i] for i in rows])
    )


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
