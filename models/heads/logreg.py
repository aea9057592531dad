"""Multinomial logistic regression head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from models.heads.common import (
    _check_rows,
    _encode_labels,
    _read,
    _Standardizer,
    _write,
    softmax,
)


# --- logistic regression ------------------------------------------------------------------
class LogRegHead:
    """Multinomial logistic regression; ``C`` is the inverse L2 strength on standardised X."""

    kind: ClassVar[str] = "logreg"

    def __init__(self, *, C: float = 0.5, max_iter: int = 500, seed: int = 0) -> None:
        self.C, self.max_iter, self.seed = C, max_iter, seed
        self.classes: list[str] = []
        self.coef = np.zeros((0, 0), dtype=np.float32)  # (k, d)
        self.intercept = np.zeros(0, dtype=np.float32)  # (k,)
        self._scale: _Standardizer | None = None

    def fit(self, X: np.ndarray, y: Sequence[str]) -> LogRegHead:
        from sklearn.linear_model import LogisticRegression

        self.classes, codes = _encode_labels(y)
        self._scale = _Standardizer.fit(X)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        model.fit(self._scale(X), codes)
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: sigmoid(w.x+b) == softmax([0, w.x+b])[1]
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        self.coef, self.intercept = coef.astype(np.float32), intercept.astype(np.float32)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._scale is None:
            raise RuntimeError("LogRegHead: fit or load it first")
        return softmax(self._scale(X) @ self.coef.T + self.intercept)

    def save(self, directory: Path, name: str) -> None:
        if self._scale is None:
            raise RuntimeError("LogRegHead: nothing to save before fit")
        config = {
            "kind": self.kind,
            "classes": self.classes,
            "C": self.C,
            "max_iter": self.max_iter,
        }
        arrays = {"coef": self.coef, "intercept": self.intercept}
        _write(directory, name, config, arrays | {"mean": self._scale.mean, "std": self._scale.std})

    @classmethod
    def load(cls, directory: Path, name: str) -> LogRegHead:
        config, arrays = _read(directory, name, cls.kind)
        head = cls(C=config["C"], max_iter=config["max_iter"])
        head.classes = list(config["classes"])
        head.coef, head.intercept = arrays["coef"], arrays["intercept"]
        head._scale = _Standardizer(arrays["mean"], arrays["std"])
        _check_rows(name, head.coef.shape[0], head.classes)
        return head
