"""A warm retrain: refit the incumbent's choices on the new papers, starting from its weights.

A cold train fits a grid of category heads (three logistic regressions, the MLP, six kNN
blends) and keeps the one that validates best; on the 5k sample that grid is most of the
fit. After a small share of new papers the choice hardly moves, so a warm retrain fits only
the head the incumbent chose, with the same settings, each fit starting from the incumbent's
own weights (models.heads.warm), and the multi-label and domain heads likewise. What stays
chosen on the new validation split: the decoding and (in the large regime) the text fusion
weight, which cost one pass over validation.

When it does not apply (``load_warm_start`` says why, and the trainer runs cold): no
incumbent, a fine-tuned or tuned incumbent, another embedder or vector size, a regime change
(``training.selection.SCALE_ROWS``), or more than ``MAX_GROWTH`` new training papers since
the grid last chose the heads (counted across warm retrains: ``chosen_at_rows``), when the
grid is worth its cost again. ``retrain --cold`` forces the grid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError, ModelFormatError
from core.progress import progress_bar
from models.bundle import read_config, read_metrics
from models.classifier import PaperClassifier
from models.heads import (
    FitSettings,
    KNNBlendHead,
    LogRegHead,
    MLPHead,
    MultiLabelHead,
    SingleLabelHead,
    SoftmaxHead,
    StoredHead,
    fuse_log_linear,
)
from training.evaluate import argmax_accuracy
from training.labels import PaperLabels, column
from training.selection import (
    SCALE_ROWS,
    choose_decoding,
    choose_text_weight,
    fit_text_head,
)
from training.splits import Split

log = logging.getLogger(__name__)

MAX_GROWTH = 0.2
"""Most new training papers, as a share of the incumbent's, that a warm retrain accepts."""


_SINGLE = {LogRegHead.kind, KNNBlendHead.kind, SoftmaxHead.kind, MLPHead.kind}
ROLES = {"category": _SINGLE, "domain": _SINGLE, "categories": {MultiLabelHead.kind}}
"""The kind each role's head must have for a warm refit (every cold train writes all three)."""


@dataclass(frozen=True)
class WarmStart:
    """The incumbent whose choices and weights a warm retrain reuses."""

    version: str
    heads: dict[str, StoredHead]
    category_head: str
    """Its selection's name for the category head (kept in the new selection)."""
    text_weight: float
    train_rows: int
    chosen_at_rows: int
    """Training papers when the heads were last chosen by the grid (a cold train)."""


HEAD_KINDS: dict[str, str] = {
    "logreg": LogRegHead.kind,
    "logreg-knn": KNNBlendHead.kind,
    "mlp": MLPHead.kind,
    "softmax": SoftmaxHead.kind,
}
"""A forced ``--head`` and the category head kind it fits (``auto`` accepts any)."""


def load_warm_start(
    model_dir: Path, *, embedder_name: str, dim: int, train_rows: int, head: str = "auto"
) -> tuple[WarmStart | None, str]:
    """(the incumbent in ``model_dir`` as a warm start, why) or (None, why not). ``head``:
    the category head asked for; a forced one the incumbent does not have means cold."""
    try:
        config = read_config(model_dir)
    except (ModelError, OSError) as exc:
        return None, f"the incumbent cannot be read ({exc})"
    selection = read_metrics(model_dir).get("selection", {})
    old_rows = int(config.training.get("split", {}).get("train", 0))
    # the grid runs again once the data has grown enough since it last ran, however many
    # warm retrains came in between
    chosen_at = int(selection.get("warm_start", {}).get("chosen_at_rows", old_rows))
    if config.embedder is None:
        return None, f"{config.version} is a fine-tuned encoder"
    if config.embedder.name != embedder_name or config.embedder.dim != dim:
        return None, f"{config.version} reads {config.embedder.name} ({config.embedder.dim}-d)"
    if not selection or "tuning" in selection or not old_rows:
        return None, f"{config.version} was tuned or records no selection or training split"
    if (old_rows > SCALE_ROWS) != (train_rows > SCALE_ROWS):
        return None, f"{old_rows} -> {train_rows} training papers changes the head regime"
    if train_rows > chosen_at * (1 + MAX_GROWTH):
        return None, (
            f"{chosen_at} -> {train_rows} training papers since the heads were last chosen is "
            f"more than {MAX_GROWTH:.0%} new"
        )
    try:
        incumbent = PaperClassifier.load(model_dir, with_embedder=False)
    except (ModelError, OSError) as exc:
        return None, f"the incumbent cannot be read ({exc})"
    heads = {role: head for role, head in incumbent.heads.items() if role != "text"}
    kinds = {role: getattr(heads.get(role), "kind", None) for role in ROLES}
    if any(kinds[role] not in allowed for role, allowed in ROLES.items()):
        return None, f"{config.version} has heads {kinds}, not ones a warm refit knows"
    if head != "auto" and HEAD_KINDS.get(head) != kinds["category"]:
        return None, f"--head {head} asked for, {config.version} has a {kinds['category']} head"
    warm = WarmStart(
        version=config.version,
        heads=heads,  # type: ignore[arg-type]  # kinds checked above
        category_head=str(selection.get("category_head", heads["category"].kind)),
        text_weight=float(config.decoding.get("text_weight", 0.0)),
        train_rows=old_rows,
        chosen_at_rows=chosen_at,
    )
    return warm, f"{config.version}'s choices and weights ({old_rows} -> {train_rows} papers)"


def refit_heads(
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    warm: WarmStart,
    *,
    seed: int,
    show: bool,
    texts: Sequence[str] | None = None,
) -> tuple[dict[str, StoredHead], dict[str, Any]]:
    """The incumbent's heads refitted on ``parts.train`` from its weights; the decoding (and
    the text weight) chosen again on validation. Returns (heads, selection) as
    ``training.selection.fit_heads`` does, the selection marked ``warm_start``."""
    tr, va = parts.train, parts.val
    truth = [labels[i] for i in va]
    y_cat = column(labels, "category")
    large = len(tr) > SCALE_ROWS
    bar = progress_bar(3 + (warm.text_weight > 0), desc="refit", unit="head", enabled=show)
    bar.set_postfix_str(warm.category_head)
    category = _refit_single(warm.heads["category"], X, y_cat, labels, parts, seed)
    p_val = category.predict_proba(X[va])
    category_acc = argmax_accuracy(category.classes, p_val, [y_cat[i] for i in va])
    heads: dict[str, StoredHead] = {"category": category}
    bar.update()
    text_record: dict[str, Any] = {"text_weight": 0.0}
    if warm.text_weight > 0 and texts is not None and large:
        bar.set_postfix_str("text (tf-idf)")
        text_head, p_text = fit_text_head(texts, y_cat, parts, category, seed)
        weight, scores = choose_text_weight(p_val, p_text, category.classes, truth)
        text_record = {"text_weight": weight, "text_weight_val_score": scores}
        if weight > 0.0:
            heads["text"] = text_head
            p_val = fuse_log_linear(p_val, p_text, weight)
        bar.update()
    bar.set_postfix_str("domain")
    y_dom = column(labels, "domain")
    domain = _refit_single(warm.heads["domain"], X, y_dom, labels, parts, seed)
    p_domain = (list(domain.classes), domain.predict_proba(X[va]))
    domain_acc = argmax_accuracy(domain.classes, p_domain[1], [y_dom[i] for i in va])
    bar.update()
    bar.set_postfix_str("categories")
    multi = _refit_multilabel(warm.heads["categories"], X, labels, parts, seed=seed, large=large)
    bar.update()
    bar.close()
    decoding, decoding_scores = choose_decoding(p_val, category.classes, truth, p_domain)
    decoding["text_weight"] = text_record["text_weight"]
    selection = {
        "category_head": warm.category_head,
        "regime": "large (torch heads)" if large else "small (scikit-learn heads)",
        "warm_start": {
            "from": warm.version,
            "train_rows_before": warm.train_rows,
            "chosen_at_rows": warm.chosen_at_rows,
        },
        "candidates_val_category_accuracy": {warm.category_head: round(category_acc, 4)},
        "text": text_record,
        "domain_head_val_accuracy": round(domain_acc, 4),
        "decoding": decoding,
        "decoding_val": decoding_scores,
    }
    heads |= {"domain": domain, "categories": multi}
    return heads, selection


def _refit_single(
    old: StoredHead,
    X: np.ndarray,
    y: list[str],
    labels: list[PaperLabels],
    parts: Split,
    seed: int,
) -> SingleLabelHead:
    """A new head of ``old``'s kind and settings fitted on the train rows from its weights
    (MLP and softmax: early stopping on the validation rows)."""
    tr, va = parts.train, parts.val
    X_tr, y_tr = X[tr], [y[i] for i in tr]
    if isinstance(old, KNNBlendHead):
        blend = KNNBlendHead(
            C=old.C, k=old.k, tau=old.tau, weight=old.weight,
            max_iter=old.max_iter, seed=seed, max_per_class=old.max_per_class,
        )  # fmt: skip
        return blend.fit(X_tr, y_tr, label_sets=[labels[i].categories for i in tr], init=old)
    if isinstance(old, LogRegHead):
        return LogRegHead(C=old.C, max_iter=old.max_iter, seed=seed).fit(X_tr, y_tr, init=old)
    y_va = [y[i] for i in va]
    if isinstance(old, SoftmaxHead):
        settings = FitSettings(**(vars(old.settings) | {"seed": seed}))
        return SoftmaxHead(settings).fit(X_tr, y_tr, X_val=X[va], y_val=y_va, init=old)
    if isinstance(old, MLPHead):
        mlp = MLPHead(
            hidden=old.hidden, dropout=old.dropout, lr=old.lr, weight_decay=old.weight_decay,
            batch_size=old.batch_size, patience=old.patience, seed=seed,
        )  # fmt: skip
        return mlp.fit(X_tr, y_tr, X_val=X[va], y_val=y_va, init=old)
    raise ModelFormatError(f"no warm refit for a {old.kind!r} head")


def _refit_multilabel(
    old: StoredHead,
    X: np.ndarray,
    labels: list[PaperLabels],
    parts: Split,
    *,
    seed: int,
    large: bool,
) -> MultiLabelHead:
    """The multi-label head refitted from ``old``'s per-label weights; thresholds tuned again."""
    if not isinstance(old, MultiLabelHead):
        raise ModelFormatError(f"no warm refit for a {old.kind!r} multi-label head")
    tr, va = parts.train, parts.val
    head = MultiLabelHead(  # the iteration cap is today's default (older bundles: 300)
        C=old.C, min_positives=old.min_positives,
        default_threshold=old.default_threshold, seed=seed, solver="torch" if large else "lbfgs",
    )  # fmt: skip
    return head.fit(
        X[tr],
        [labels[i].categories for i in tr],
        X_val=X[va],
        y_val=[labels[i].categories for i in va],
        init=old,
    )
