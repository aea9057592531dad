"""Multinomial logistic regression head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.heads.common import (
    Standardizer,
    check_rows,
    encode_labels,
    read_head,
    softmax,
    write_head,
)
from models.heads.warm import linear_start


# --- logistic regression ------------------------------------------------------------------
class LogRegHead:
    """Multinomial logistic regression; ``C`` is the inverse L2 strength on standardised X."""

    kind: ClassVar[str] = "logreg"

    def __init__(self, *, C: float = 0.5, max_iter: int = 500, seed: int = 0) -> None:
        self.C, self.max_iter, self.seed = C, max_iter, seed
        self.classes: list[str] = []
        self.coef = np.zeros((0, 0), dtype=np.float32)  # (k, d)
        self.intercept = np.zeros(0, dtype=np.float32)  # (k,)
        self.iterations = 0  # lbfgs iterations of the last fit (not saved)
        self._scale: Standardizer | None = None

    def fit(self, X: np.ndarray, y: Sequence[str], *, init: LogRegHead | None = None) -> LogRegHead:
        """Fit on (X, y); ``init``: an earlier fit to start lbfgs from (a retrain's warm start,
        models.heads.warm). The optimum is the same (the loss is convex), only reached sooner."""
        from sklearn.linear_model import LogisticRegression

        self.classes, codes = encode_labels(y)
        self._scale = Standardizer.fit(X)
        start = init.start_for(self.classes, self._scale) if init is not None else None
        model = LogisticRegression(
            C=self.C, max_iter=self.max_iter, random_state=self.seed, warm_start=start is not None
        )
        if start is not None:
            model.coef_, model.intercept_ = start
        model.fit(self._scale(X), codes)
        self.iterations = int(np.max(model.n_iter_))
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: sigmoid(w.x+b) == softmax([0, w.x+b])[1]
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        self.coef, self.intercept = coef.astype(np.float32), intercept.astype(np.float32)
        return self

    def start_for(
        self, classes: Sequence[str], scale: Standardizer
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """These weights as lbfgs's start for ``classes`` on inputs standardised by ``scale``
        (float64 (k, d), (k,)); None for two classes, which scikit-learn fits as one row."""
        if self._scale is None:
            raise RuntimeError("LogRegHead: an unfitted head cannot start a fit")
        if len(classes) < 3:
            return None
        coef, intercept = linear_start(
            self.coef, self.intercept,
            old_scale=self._scale, old_classes=self.classes, new_scale=scale, new_classes=classes,
        )  # fmt: skip
        return coef.astype(np.float64), intercept.astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._scale is None:
            raise RuntimeError("LogRegHead: fit or load it first")
        return softmax(self._scale(X) @ self.coef.T + self.intercept)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted weights as saved: ``coef`` (k, d), ``intercept`` (k,), ``mean``/``std``
        (d,) of the standardiser (``from_saved`` reads them back)."""
        if self._scale is None:
            raise RuntimeError("LogRegHead: nothing to save before fit")
        return {
            "coef": self.coef,
            "intercept": self.intercept,
            "mean": self._scale.mean,
            "std": self._scale.std,
        }

    def save(self, directory: Path, name: str) -> None:
        arrays = self.arrays()
        config = {
            "kind": self.kind,
            "classes": self.classes,
            "C": self.C,
            "max_iter": self.max_iter,
        }
        write_head(directory, name, config, arrays)

    @classmethod
    def load(cls, directory: Path, name: str) -> LogRegHead:
        config, arrays = read_head(directory, name, cls.kind)
        return cls.from_saved(name, config, arrays, classes=config["classes"])

    @classmethod
    def from_saved(
        cls,
        name: str,
        config: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        *,
        classes: Sequence[str],
    ) -> LogRegHead:
        """A fitted head from a saved config (``C``, ``max_iter``), its ``arrays()`` and its
        ``classes``; ``name`` is for errors. (The kNN blend saves its logistic part so.)"""
        head = cls(C=config["C"], max_iter=config["max_iter"])
        head.classes = list(classes)
        head.coef, head.intercept = arrays["coef"], arrays["intercept"]
        head._scale = Standardizer(arrays["mean"], arrays["std"])
        check_rows(name, head.coef.shape[0], head.classes)
        return head
