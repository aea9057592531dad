"""Fitting the heads and choosing among them (and the decoding) on validation.

Two regimes, by the number of training papers:
- up to ``SCALE_ROWS``: scikit-learn logistic regressions (C grid), the MLP and the kNN
  blend, as measured on the 5k sample (docs/quality.md);
- above it: torch mini-batch softmax heads (linear and one hidden layer; models.heads.torchfit),
  because lbfgs over 270k x 384 x 170 would dominate the run; no kNN blend.
In the large regime a TF-IDF text head is also fitted and fused with the chosen category head
when that scores better on validation (``text_weight`` in the decoding; 0 = dropped). On the
5k sample it lost on validation at every weight, so the small regime does not fit it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import numpy as np

from models.heads import (
    FitSettings,
    KNNBlendHead,
    LogRegHead,
    MLPHead,
    MultiLabelHead,
    SoftmaxHead,
    TfidfHead,
    align_columns,
    fuse_log_linear,
)
from models.predict import DecodeMode, decode
from training.labels import PaperLabels, category_mapping, column
from training.splits import Split

log = logging.getLogger(__name__)


HeadChoice = Literal["logreg", "mlp", "logreg-knn", "softmax", "auto"]
SCALE_ROWS = 20_000
"""Above this many training papers the torch heads replace scikit-learn's."""
LINEAR = FitSettings(hidden=0, lr=2e-3, weight_decay=1e-4, batch_size=512, max_epochs=40)
HIDDEN = FitSettings(hidden=1024, dropout=0.3, lr=1e-3, weight_decay=1e-4, batch_size=512)
TEXT_WEIGHTS: tuple[float, ...] = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)
"""Weights of the TF-IDF head in the log-linear fusion tried on validation."""
LOGREG_GRID: tuple[float, ...] = (0.02, 0.1, 0.5)
"""Inverse L2 strengths tried for logreg (standardised 384-d inputs); best on validation."""
BLEND_GRID: tuple[tuple[int, float], ...] = tuple(
    (k, w) for k in (20, 40) for w in (0.2, 0.35, 0.5)
)
"""(k, weight) of the kNN blends tried on the best logreg (models.heads.KNNBlendHead)."""
BLEND_TAU = 0.05


# --- fitting ----------------------------------------------------------------------------------
def _fit_heads(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    *,
    head: HeadChoice,
    seed: int,
    show: bool,
    texts: Sequence[str] | None = None,
    tuned: FitSettings | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit category (chosen on validation), domain, multi-label and (with ``texts``) text heads.

    ``tuned``: settings found by ``training.tuning``: a SoftmaxHead with them is then the only
    category candidate (no kNN blend).
    Returns ({"category", "domain", "categories"[, "text"]} -> fitted head, selection record).
    """
    tr, va = parts.train, parts.val
    large = len(tr) > SCALE_ROWS
    candidates = _candidates(head, seed, large=large, tuned=tuned)
    bar = _steps(len(candidates) + 2 + (texts is not None and large), show)
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
    if head in ("auto", "logreg-knn") and not large and tuned is None:
        bar.set_postfix_str("knn blend")
        chosen, category, blend_val = _choose_blend(
            X, labels, parts, candidates, tried, (chosen, category), forced=head == "logreg-knn"
        )
    p_val = category.predict_proba(X[va])
    heads: dict[str, Any] = {"category": category}
    text_record: dict[str, Any] = {"text_weight": 0.0}
    if texts is not None and large:  # at 4k papers it lost on validation (docs/quality.md)
        bar.set_postfix_str("text (tf-idf)")
        text_head = TfidfHead(fit_settings=FitSettings(weight_decay=1e-6, max_epochs=6, seed=seed))
        text_head.fit(
            [texts[i] for i in tr], [y_cat[i] for i in tr],
            texts_val=[texts[i] for i in va], y_val=[y_cat[i] for i in va],
        )  # fmt: skip
        p_text = align_columns(
            text_head.predict_proba_texts([texts[i] for i in va]),
            text_head.classes,
            list(category.classes),
        )
        weight, scores = choose_text_weight(
            p_val, p_text, category.classes, [labels[i] for i in va]
        )
        text_record = {"text_weight": weight, "text_weight_val_score": scores}
        if weight > 0.0:
            heads["text"] = text_head
            p_val = fuse_log_linear(p_val, p_text, weight)
        bar.update()

    bar.set_postfix_str("domain")
    domain_head = _domain_head(category, seed)
    domain_acc = _fit_and_score(domain_head, X, column(labels, "domain"), tr, va)
    bar.update()
    bar.set_postfix_str("categories")
    multi = MultiLabelHead(seed=seed, solver="torch" if large else "lbfgs").fit(
        X[tr],
        [labels[i].categories for i in tr],
        X_val=X[va],
        y_val=[labels[i].categories for i in va],
    )
    bar.update()
    bar.close()
    p_domain = (list(domain_head.classes), domain_head.predict_proba(X[va]))
    decoding, decoding_scores = choose_decoding(
        p_val, category.classes, [labels[i] for i in va], p_domain
    )
    decoding["text_weight"] = text_record["text_weight"]
    selection = {
        "category_head": chosen,
        "regime": "large (torch heads)" if large else "small (scikit-learn heads)",
        "candidates_val_category_accuracy": tried,
        "blend_val_score": blend_val,
        "text": text_record,
        "domain_head_val_accuracy": round(domain_acc, 4),
        "decoding": decoding,
        "decoding_val": decoding_scores,
    }
    if isinstance(category, SoftmaxHead):
        selection["category_head_settings"] = asdict(category.settings)
    heads |= {"domain": domain_head, "categories": multi}
    return heads, selection


def _domain_head(category: Any, seed: int) -> Any:
    """A direct domain head of the same family as the chosen category head."""
    if isinstance(category, KNNBlendHead | LogRegHead):
        return LogRegHead(C=category.C, seed=seed)
    if isinstance(category, SoftmaxHead):
        return SoftmaxHead(category.settings)
    return MLPHead(seed=seed)


def _candidates(
    head: HeadChoice, seed: int, *, large: bool, tuned: FitSettings | None = None
) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if tuned is not None:
        return [("softmax tuned", SoftmaxHead(_seeded(tuned, seed)))]
    if head == "softmax" or (large and head == "auto"):
        out.append(("softmax linear", SoftmaxHead(_seeded(LINEAR, seed))))
        if head == "auto":
            out.append(("softmax hidden=1024", SoftmaxHead(_seeded(HIDDEN, seed))))
        return out
    if head in ("logreg", "logreg-knn", "auto"):
        out += [(f"logreg C={C}", LogRegHead(C=C, seed=seed)) for C in LOGREG_GRID]
    if head in ("mlp", "auto"):
        out.append(("mlp", MLPHead(seed=seed)))
    return out


def _seeded(settings: FitSettings, seed: int) -> FitSettings:
    return FitSettings(**(asdict(settings) | {"seed": seed}))


def choose_text_weight(
    p_embedding: np.ndarray,
    p_text: np.ndarray,
    classes: list[str],
    truth: list[PaperLabels],
    weights: Sequence[float] = TEXT_WEIGHTS,
) -> tuple[float, dict[str, float]]:
    """The fusion weight with the best validation category accuracy + precision@1 + top-5
    micro recall (0.0 = embedding head alone wins)."""
    scores = {
        str(w): round(_blend_score(classes, fuse_log_linear(p_embedding, p_text, w), truth), 4)
        for w in weights
    }
    best = max(weights, key=lambda w: (scores[str(w)], -w))
    log.info("text fusion: validation scores %s -> weight %s", scores, best)
    return float(best), scores


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
    if isinstance(model, MLPHead | SoftmaxHead):
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
