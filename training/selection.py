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

from core.progress import Bar, progress_bar
from models.heads import (
    FitSettings,
    KNNBlendHead,
    LogRegHead,
    MLPHead,
    MultiLabelHead,
    SingleLabelHead,
    SoftmaxHead,
    StoredHead,
    TfidfHead,
    align_columns,
    fuse_log_linear,
)
from models.predict import DecodeMode, decode
from training.evaluate import (
    TOP,
    accuracy,
    argmax_accuracy,
    precision_at_1,
    top_k_micro_recall,
    top_labels,
)
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
def fit_heads(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    *,
    head: HeadChoice,
    seed: int,
    show: bool,
    texts: Sequence[str] | None = None,
    tuned: FitSettings | None = None,
) -> tuple[dict[str, StoredHead], dict[str, Any]]:
    """Fit category (chosen on validation), domain, multi-label and (with ``texts``) text heads.

    ``tuned``: settings found by ``training.tuning``: a SoftmaxHead with them is then the only
    category candidate (no kNN blend).
    Returns ({"category", "domain", "categories"[, "text"]} -> fitted head, selection record).
    """
    tr, va = parts.train, parts.val
    truth = [labels[i] for i in va]
    large = len(tr) > SCALE_ROWS
    candidates = _candidates(head, seed, large=large, tuned=tuned)
    steps = len(candidates) + 2 + (texts is not None and large)
    bar = progress_bar(steps, desc="fit", unit="head", enabled=show)
    blend = head in ("auto", "logreg-knn") and not large and tuned is None
    chosen, category, tried, blend_val = _choose_category(
        X, labels, parts, candidates, bar, blend=blend, forced_blend=head == "logreg-knn"
    )
    p_val = category.predict_proba(X[va])
    heads: dict[str, StoredHead] = {"category": category}
    text_record: dict[str, Any] = {"text_weight": 0.0}
    if texts is not None and large:  # at 4k papers it lost on validation (docs/quality.md)
        bar.set_postfix_str("text (tf-idf)")
        text_head, p_text = fit_text_head(texts, column(labels, "category"), parts, category, seed)
        weight, scores = choose_text_weight(p_val, p_text, category.classes, truth)
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
    multi = _fit_multilabel(X, labels, parts, seed=seed, large=large)
    bar.update()
    bar.close()
    p_domain = (list(domain_head.classes), domain_head.predict_proba(X[va]))
    decoding, decoding_scores = choose_decoding(p_val, category.classes, truth, p_domain)
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


def _choose_category(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    candidates: list[tuple[str, SingleLabelHead]],
    bar: Bar,
    *,
    blend: bool,
    forced_blend: bool,
) -> tuple[str, SingleLabelHead, dict[str, float], dict[str, float]]:
    """Fit every candidate on train; the best validation category accuracy wins, then (with
    ``blend``) kNN blends of the best logreg compete with it (``_choose_blend``).

    Returns (name, head, {candidate: val accuracy}, {blend option: val score}).
    """
    y_cat = column(labels, "category")
    tried: dict[str, float] = {}
    best: tuple[float, str, SingleLabelHead] | None = None
    for name, model in candidates:
        bar.set_postfix_str(name)
        acc = _fit_and_score(model, X, y_cat, parts.train, parts.val)
        tried[name] = round(acc, 4)
        log.info("candidate %s: validation category accuracy %.4f", name, acc)
        if best is None or acc > best[0]:
            best = (acc, name, model)
        bar.update()
    assert best is not None
    _, chosen, category = best
    if not blend:
        return chosen, category, tried, {}
    bar.set_postfix_str("knn blend")
    chosen, category, blend_val = _choose_blend(
        X, labels, parts, candidates, tried, (chosen, category), forced=forced_blend
    )
    return chosen, category, tried, blend_val


def fit_text_head(
    texts: Sequence[str], y: list[str], parts: Split, category: SingleLabelHead, seed: int
) -> tuple[TfidfHead, np.ndarray]:
    """The TF-IDF head fitted on the train rows, and its validation probabilities in the
    columns of the ``category`` head (for the fusion)."""
    tr, va = parts.train, parts.val
    text_head = TfidfHead(fit_settings=FitSettings(weight_decay=1e-6, max_epochs=6, seed=seed))
    text_head.fit(
        [texts[i] for i in tr], [y[i] for i in tr],
        texts_val=[texts[i] for i in va], y_val=[y[i] for i in va],
    )  # fmt: skip
    p_text = align_columns(
        text_head.predict_proba_texts([texts[i] for i in va]),
        text_head.classes,
        list(category.classes),
    )
    return text_head, p_text


def _fit_multilabel(
    X: np.ndarray, labels: list[PaperLabels], parts: Split, *, seed: int, large: bool
) -> MultiLabelHead:
    """The multi-label head over declared categories; thresholds tuned on validation."""
    tr, va = parts.train, parts.val
    return MultiLabelHead(seed=seed, solver="torch" if large else "lbfgs").fit(
        X[tr],
        [labels[i].categories for i in tr],
        X_val=X[va],
        y_val=[labels[i].categories for i in va],
    )


def _domain_head(category: SingleLabelHead, seed: int) -> SingleLabelHead:
    """A direct domain head of the same family as the chosen category head."""
    if isinstance(category, KNNBlendHead | LogRegHead):
        return LogRegHead(C=category.C, seed=seed)
    if isinstance(category, SoftmaxHead):
        return SoftmaxHead(category.settings)
    return MLPHead(seed=seed)


def _candidates(
    head: HeadChoice, seed: int, *, large: bool, tuned: FitSettings | None = None
) -> list[tuple[str, SingleLabelHead]]:
    """(name, unfitted head) of the category candidates for ``head`` in this regime."""
    out: list[tuple[str, SingleLabelHead]] = []
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
    candidates: list[tuple[str, SingleLabelHead]],
    tried: dict[str, float],
    single: tuple[str, SingleLabelHead],
    *,
    forced: bool,
) -> tuple[str, SingleLabelHead, dict[str, float]]:
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
    best: tuple[float, str, SingleLabelHead] | None = None
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
    """Category accuracy + precision@1 + top-5 micro recall of the argmax/top-5 of ``probs``
    (the metrics of training.evaluate)."""
    top = top_labels(classes, probs, TOP)
    best = [row[0] for row in top]
    declared = [set(lab.categories) for lab in truth]
    return (
        accuracy(best, [lab.category for lab in truth])
        + precision_at_1(best, declared)
        + top_k_micro_recall(top, declared)
    )


def _fit_and_score(
    model: SingleLabelHead, X: np.ndarray, y: list[str], train: list[int], val: list[int]
) -> float:
    """Fit on the train rows (MLP: early stopping on the val rows); val accuracy."""
    y_tr, y_va = [y[i] for i in train], [y[i] for i in val]
    if isinstance(model, MLPHead | SoftmaxHead):
        model.fit(X[train], y_tr, X_val=X[val], y_val=y_va)
    else:
        model.fit(X[train], y_tr)
    return argmax_accuracy(model.classes, model.predict_proba(X[val]), y_va)


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
            acc = {s: accuracy(spaces[s].predicted_labels(), truth[s]) for s in truth}
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
