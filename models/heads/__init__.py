"""Classifier heads over embeddings. Each saves ``<name>.json`` (config, classes) and
``<name>.safetensors`` (arrays) and predicts with numpy alone: no pickle, no training code.

    LogRegHead       multinomial logistic regression (fit: scikit-learn, lbfgs; small data)
    SoftmaxHead      linear or one-hidden-layer softmax (fit: torch mini-batches; any size)
    TfidfHead        TF-IDF of the text -> linear softmax (reads texts; fused with the above)
    MLPHead          one hidden layer + dropout (fit: torch, AdamW, early stopping)
    KNNBlendHead     logreg blended with cosine kNN votes over all declared categories
    MultiLabelHead   one-vs-rest logistic, per-label thresholds tuned for F1 on validation

Shapes: X is float32 (n, d); single-label ``y`` is a list of n class names; ``predict_proba``
returns float32 (n, len(classes)), rows summing to 1 (multi-label: independent sigmoids).
Inputs are standardised with the training mean/std, stored with the head. What the heads
share is typed by the protocols of models.heads.base (``Head``: kind, classes, predict_proba,
save, load).
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import ModelFormatError
from models.heads.base import Head, SingleLabelHead, StoredHead
from models.heads.common import HEAD_FORMAT, read_head_config, sigmoid, softmax
from models.heads.knn import KNNBlendHead
from models.heads.logreg import LogRegHead
from models.heads.mlp import MLPHead
from models.heads.multilabel import (
    MultiLabelHead,
    label_matrix,
    tune_global_threshold,
    tune_thresholds,
)
from models.heads.softmax import SoftmaxHead
from models.heads.tfidf import TfidfHead, TfidfSettings, align_columns, fuse_log_linear
from models.heads.torchfit import FitSettings, copy_state

__all__ = [
    "HEAD_FORMAT",
    "HEAD_TYPES",
    "FitSettings",
    "Head",
    "KNNBlendHead",
    "LogRegHead",
    "MLPHead",
    "MultiLabelHead",
    "SingleLabelHead",
    "SoftmaxHead",
    "StoredHead",
    "TfidfHead",
    "TfidfSettings",
    "align_columns",
    "copy_state",
    "fuse_log_linear",
    "label_matrix",
    "load_head",
    "read_head_config",
    "sigmoid",
    "softmax",
    "tune_global_threshold",
    "tune_thresholds",
]


HEAD_TYPES: dict[str, type[StoredHead]] = {
    LogRegHead.kind: LogRegHead,
    MLPHead.kind: MLPHead,
    KNNBlendHead.kind: KNNBlendHead,
    MultiLabelHead.kind: MultiLabelHead,
    SoftmaxHead.kind: SoftmaxHead,
    TfidfHead.kind: TfidfHead,
}


def load_head(directory: Path, name: str) -> StoredHead:
    """Load whichever head ``<name>.json`` declares."""
    path = directory / f"{name}.json"
    if not path.is_file():
        raise ModelFormatError(f"missing head config {path}")
    kind = json.loads(path.read_text()).get("kind")
    if kind not in HEAD_TYPES:
        raise ModelFormatError(f"{path}: unknown head kind {kind!r}; known: {sorted(HEAD_TYPES)}")
    return HEAD_TYPES[kind].load(directory, name)
