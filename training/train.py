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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.schemas import Paper
from models.bundle import BundleConfig, EmbedderInfo, HeadInfo, write_config, write_metrics
from models.cache import EmbeddingCache, embed_with_cache
from models.classifier import PaperClassifier
from models.embedder import DEFAULT_EMBEDDER, Embedder
from models.heads import KNNBlendHead, LogRegHead, MLPHead, MultiLabelHead
from models.predict import DecodeMode, decode
from models.registry import new_version_id, publish, staging_dir
from training.evaluate import evaluate_scores
from training.labels import PaperLabels, category_mapping, column, labels_of
from training.report import confusion_png, per_class_report
from training.splits import Split, SplitKind, stratified_split, time_split
from training.tracking import track_run

log = logging.getLogger(__name__)

HeadChoice = Literal["logreg", "mlp", "logreg-knn", "auto"]
LOGREG_GRID: tuple[float, ...] = (0.02, 0.1, 0.5)
"""Inverse L2 strengths tried for logreg (standardised 384-d inputs); best on validation."""
BLEND_GRID: tuple[tuple[int, float], ...] = tuple(
    (k, w) for k in (20, 40) for w in (0.2, 0.35, 0.5)
)
"""(k, weight) of the kNN blends tried on the best logreg (models.heads.KNNBlendHead)."""
BLEND_TAU = 0.05


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


@dataclass
class PaperData:
    papers: list[Paper]
    labels: list[PaperLabels]
    skipped: dict[str, int]


def train_model(
    papers: Iterable[Paper] | Path | str,
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
    batch_size: int = 64,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    embedder: Embedder | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train, evaluate and write one model version under ``models_dir``; see module doc.

    ``papers`` is an iterable of Paper or the path of a Kaggle-format snapshot (read with
    ``ingest.snapshot.read_snapshot``, at most ``max_samples``). ``embedder`` overrides
    ``embedder_name``/``variant``/``device`` (tests reuse one). ``progress`` defaults to
    "stderr is a terminal".
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    show = sys.stderr.isatty() if progress is None else progress
    version = new_version_id(now)
    seconds: dict[str, float] = {}

    data = read_papers(papers, max_samples=max_samples, show=show)
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

    t0 = time.perf_counter()
    heads, selection = _fit_heads(X, data.labels, parts, head=head, seed=seed, show=show)
    seconds["fit"] = time.perf_counter() - t0

    stage = staging_dir(models_dir, version)
    if stage.exists():
        shutil.rmtree(stage)
    summary = summarize(data, parts, seconds) | {
        "embedder_device": embedder.device,
        "texts_embedded": embedded,
    }
    _write_bundle(stage, version, now, embedder, heads, selection, summary)
    classifier = PaperClassifier.load(stage, with_embedder=False)  # the serving code path
    metrics = score_splits(stage, classifier, data.labels, parts, lambda rows: X[rows])
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


def split_papers(
    data: PaperData, kind: SplitKind, *, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    keys = [p.arxiv_id for p in data.papers]
    if kind == "time":
        dates = [p.submitted for p in data.papers]
        parts = time_split(
            keys, dates, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    else:
        strata = column(data.labels, "category")
        parts = stratified_split(
            keys, strata, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    if not parts.train or not parts.val or not parts.test:
        raise ValueError(f"too few papers to train: split {parts.summary()}")
    return parts


def _embed(
    embedder: Embedder, texts: list[str], cache_dir: Path | None, *, show: bool
) -> tuple[np.ndarray, int]:
    """(embeddings float32 (n, dim), how many texts had to be embedded)."""
    if cache_dir is None:
        return embed_with_cache(embedder, texts, None, show_progress=show), len(texts)
    with EmbeddingCache(cache_dir) as cache:
        X = embed_with_cache(embedder, texts, cache, show_progress=show)
        return X, cache.stats.misses


# --- reading ----------------------------------------------------------------------------------
def read_papers(
    source: Iterable[Paper] | Path | str, *, max_samples: int | None, show: bool
) -> PaperData:
    if isinstance(source, (str, Path)):
        from ingest.snapshot import read_snapshot

        stream: Iterable[Paper] = read_snapshot(Path(source), max_samples=max_samples)
    else:
        stream = source
    skipped: Counter[str] = Counter()
    by_id: dict[str, tuple[Paper, PaperLabels]] = {}
    for paper in _bar(stream, show, "read", "paper"):
        labels = labels_of(paper)
        if labels is None:
            skipped["no_category"] += 1
        elif not (paper.abstract or "").strip():
            skipped["no_abstract"] += 1
        else:
            if paper.arxiv_id in by_id:
                skipped["duplicate_id"] += 1
            by_id[paper.arxiv_id] = (paper, labels)
    if max_samples is not None and len(by_id) > max_samples:
        by_id = dict(list(by_id.items())[:max_samples])
    kept = list(by_id.values())
    return PaperData([p for p, _ in kept], [lab for _, lab in kept], dict(skipped))


def _bar(items: Iterable[Paper], show: bool, desc: str, unit: str) -> Iterator[Paper]:
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, unit=unit)


# --- fitting ----------------------------------------------------------------------------------
def _fit_heads(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    *,
    head: HeadChoice,
    seed: int,
    show: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit category (chosen on validation), domain and multi-label heads.

    Returns ({"category", "domain", "categories"} -> fitted head, selection record).
    """
    tr, va = parts.train, parts.val
    candidates = _candidates(head, seed)
    bar = _steps(len(candidates) + 2, show)
    y_cat = column(labels, "category")
    tried: dict[str, float] = {}
    best: tuple[float, str, Any] | None = None
    for name, model in candidates:
        bar.set_postfix_str(name)
        acc = _fit_and_score(model, X, y_cat, tr, va)
        tried[name] = round(acc, 4)
        log.info("candidate %s: validation category accuracy %.4f", name, acc)
        if best is None or acc > best[0]:
            best = (acc, name, model)
        bar.update()
    assert best is not None
    _, chosen, category = best
    blend_val: dict[str, float] = {}
    if head in ("auto", "logreg-knn"):
        bar.set_postfix_str("knn blend")
        chosen, category, blend_val = _choose_blend(
            X, labels, parts, candidates, tried, (chosen, category), forced=head == "logreg-knn"
        )

    bar.set_postfix_str("domain")
    domain_head: Any = (
        MLPHead(seed=seed) if isinstance(category, MLPHead) else LogRegHead(C=category.C, seed=seed)
    )
    domain_acc = _fit_and_score(domain_head, X, column(labels, "domain"), tr, va)
    bar.update()
    bar.set_postfix_str("categories")
    multi = MultiLabelHead(seed=seed).fit(
        X[tr],
        [labels[i].categories for i in tr],
        X_val=X[va],
        y_val=[labels[i].categories for i in va],
    )
    bar.update()
    bar.close()
    p_domain = (list(domain_head.classes), domain_head.predict_proba(X[va]))
    decoding, decoding_scores = choose_decoding(
        category.predict_proba(X[va]), category.classes, [labels[i] for i in va], p_domain
    )
    selection = {
        "category_head": chosen,
        "candidates_val_category_accuracy": tried,
        "blend_val_score": blend_val,
        "domain_head_val_accuracy": round(domain_acc, 4),
        "decoding": decoding,
        "decoding_val": decoding_scores,
    }
    return {"category": category, "domain": domain_head, "categories": multi}, selection


def _candidates(head: HeadChoice, seed: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if head in ("logreg", "logreg-knn", "auto"):
        out += [(f"logreg C={C}", LogRegHead(C=C, seed=seed)) for C in LOGREG_GRID]
    if head in ("mlp", "auto"):
        out.append(("mlp", MLPHead(seed=seed)))
    return out


def _choose_blend(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    candidates: list[tuple[str, Any]],
    tried: dict[str, float],
    single: tuple[str, Any],
    *,
    forced: bool,
) -> tuple[str, Any, dict[str, float]]:
    """The best logreg candidate blended with kNN (``BLEND_GRID``), against ``single``.

    Every option is scored on validation by category accuracy + precision@1 + top-5 micro
    recall (the blend mostly helps the last two); the best wins, ``single`` only if not
    ``forced``. Returns (name, head, {option: score}).
    """
    tr, va = parts.train, parts.val
    truth = [labels[i] for i in va]
    logregs = [(name, m) for name, m in candidates if isinstance(m, LogRegHead)]
    base_name, base = max(logregs, key=lambda item: tried[item[0]])
    scores: dict[str, float] = {}
    best: tuple[float, str, Any] | None = None
    if not forced:
        name, model = single
        best = (_blend_score(model.classes, model.predict_proba(X[va]), truth), name, model)
        scores[name] = round(best[0], 4)
    label_sets = [labels[i].categories for i in tr]
    for k, weight in BLEND_GRID:
        blend = KNNBlendHead(k=k, tau=BLEND_TAU, weight=weight).attach(base, X[tr], label_sets)
        value = _blend_score(blend.classes, blend.predict_proba(X[va]), truth)
        name = f"{base_name} + knn k={k} tau={BLEND_TAU} weight={weight}"
        scores[name] = round(value, 4)
        log.info("candidate %s: validation score %.4f", name, value)
        if best is None or value > best[0] + 1e-9:
            best = (value, name, blend)
    assert best is not None
    return best[1], best[2], scores


def _blend_score(classes: list[str], probs: np.ndarray, truth: list[PaperLabels]) -> float:
    """Category accuracy + precision@1 + top-5 micro recall of the argmax/top-5 of ``probs``."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    accuracy = hit = found = declared = 0
    for row, labels in zip(top, truth, strict=True):
        ranked = [classes[j] for j in row]
        accuracy += ranked[0] == labels.category
        hit += ranked[0] in labels.categories
        found += len(set(ranked) & set(labels.categories))
        declared += len(set(labels.categories))
    n = max(len(truth), 1)
    return accuracy / n + hit / n + found / max(declared, 1)


def _fit_and_score(
    model: Any, X: np.ndarray, y: list[str], train: list[int], val: list[int]
) -> float:
    """Fit on the train rows (MLP: early stopping on the val rows); val accuracy."""
    y_tr, y_va = [y[i] for i in train], [y[i] for i in val]
    if isinstance(model, MLPHead):
        model.fit(X[train], y_tr, X_val=X[val], y_val=y_va)
    else:
        model.fit(X[train], y_tr)
    return _accuracy(model.classes, model.predict_proba(X[val]), y_va)


def choose_decoding(
    p_cat: np.ndarray,
    classes: list[str],
    labels: list[PaperLabels],
    p_dom: tuple[list[str], np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Pick (mode, domain_source) by validation domain + category accuracy.

    ``p_cat``: category probabilities (n_val, len(classes)); ``p_dom``: (classes, probs) of a
    direct domain head, if there is one (else the domain is always the marginal).
    """
    parents = category_mapping(classes)
    truth = {s: column(labels, s) for s in ("domain", "category")}
    results: dict[str, dict[str, float]] = {}
    best_key, best_value = "top_down/marginal", -1.0
    modes: tuple[DecodeMode, ...] = ("top_down", "flat")
    sources = ("marginal", "head") if p_dom is not None else ("marginal",)
    for mode in modes:
        for source in sources:
            domain = p_dom if source == "head" else None
            spaces = decode(p_cat, classes, parents, mode=mode, domain=domain)
            acc = {s: _agreement(spaces[s].predicted_labels(), truth[s]) for s in truth}
            key = f"{mode}/{source}"
            results[key] = {f"{s}_accuracy": round(v, 4) for s, v in acc.items()}
            if acc["domain"] + acc["category"] > best_value + 1e-9:
                best_key, best_value = key, acc["domain"] + acc["category"]
    best_mode, source = best_key.split("/")
    why = (
        f"best validation domain+category accuracy among {sorted(results)}; domain from "
        + ("the category head's marginal" if source == "marginal" else "the direct domain head")
        + "; labels are always taxonomy-consistent ("
        + (
            "top-down: each level argmax within the level above)"
            if best_mode == "top_down"
            else "flat: parents of the argmax category)"
        )
    )
    return {"mode": best_mode, "domain_source": source, "why": why}, results


def _accuracy(classes: list[str], probs: np.ndarray, truth: list[str]) -> float:
    return _agreement([classes[j] for j in probs.argmax(axis=1)], truth)


def _agreement(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix_str(self, text: str) -> None: ...

    def close(self) -> None: ...


def _steps(total: int, show: bool) -> Any:
    """A tqdm bar over ``total`` fitting steps, or a silent stand-in."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="head")


# --- outputs ----------------------------------------------------------------------------------
def _write_bundle(
    stage: Path,
    version: str,
    now: datetime,
    embedder: Embedder,
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

    ``inputs(rows)`` gives what the classifier reads for those rows: embeddings (n, dim)
    or, for a fine-tuned encoder, texts.
    """
    metrics: dict[str, Any] = {"version": classifier.version}
    for name, rows in (("val", parts.val), ("test", parts.test)):
        given = inputs(rows)
        scores = (
            classifier.score_texts(given)
            if classifier.reads_text
            else classifier.score_embeddings(given)
        )
        metrics[name] = evaluate_scores(scores, [labels[i] for i in rows])
        if name == "test":
            write_reports(stage, scores, [labels[i] for i in rows])
    return metrics


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
    split_file = {"summary": parts.summary(), "val_ids": val_ids, "test_ids": test_ids}
    (stage / "split.json").write_text(json.dumps(split_file))
    path = publish(models_dir, version)
    return TrainResult(version, path, metrics, test_ids=test_ids, val_ids=val_ids)


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
