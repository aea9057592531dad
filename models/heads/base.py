"""What the heads have in common, as typing protocols (checked by mypy, not by inheritance).

    StoredHead         kind, classes, save(directory, name), load(directory, name)   every head
      Head             + predict_proba(X)     over embeddings: logreg, mlp, kNN blend, softmax,
                                              multi-label (independent sigmoids)
        SingleLabelHead  + fit(X, y)          fitted on one label per row: the category and
                                              domain candidates of training.selection
(The TF-IDF head is a StoredHead that reads texts: ``predict_proba_texts``.)

``kind`` is the ``"kind"`` of the head's ``<name>.json`` (models.heads.load_head dispatches on
it); ``classes`` are the output columns in order. Shapes: X float32 (n, d); probabilities
float32 (n, len(classes)).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol, Self, runtime_checkable

import numpy as np


class StoredHead(Protocol):
    """A head saved as ``<name>.json`` + ``<name>.safetensors`` and loaded back from them."""

    kind: ClassVar[str]
    classes: list[str]

    def save(self, directory: Path, name: str) -> None: ...

    @classmethod
    def load(cls, directory: Path, name: str) -> Self: ...


@runtime_checkable
class Head(StoredHead, Protocol):
    """A head over embeddings: float32 (n, d) -> float32 (n, len(classes))."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


class SingleLabelHead(Head, Protocol):
    """A head fitted on one label per row; rows of ``predict_proba`` sum to 1."""

    def fit(self, X: np.ndarray, y: Sequence[str]) -> Self: ...
