"""Softmax head trained in mini-batches with torch: linear (``hidden=0``, multinomial logistic
regression) or one hidden layer. The head that scales to the 300,000-paper corpus: an epoch
over 270k x 384 inputs is a few seconds of a linear layer on 2 cores (models.heads.torchfit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np

from models.heads.common import (
    Standardizer,
    check_rows,
    encode_labels,
    known_rows,
    read_head,
    softmax,
    write_head,
)
from models.heads.torchfit import FitSettings, fit_network, forward_numpy
from models.heads.warm import network_start


class SoftmaxHead:
    """Standardised embeddings -> [Linear -> ReLU -> Dropout ->] Linear -> softmax."""

    kind: ClassVar[str] = "softmax-net"

    def __init__(self, settings: FitSettings | None = None) -> None:
        self.settings = settings or FitSettings()
        self.classes: list[str] = []
        self.weights: dict[str, np.ndarray] = {}
        self.epochs_trained = 0
        self._scale: Standardizer | None = None

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        X_val: np.ndarray | None = None,
        y_val: Sequence[str] | None = None,
        init: SoftmaxHead | None = None,
    ) -> SoftmaxHead:
        """Fit on (X, y); early stopping on the validation rows whose class was seen.
        ``init``: an earlier fit of the same shape to start from (a retrain's warm start)."""
        self.classes, codes = encode_labels(y)
        self._scale = Standardizer.fit(X)
        start = None
        if init is not None:
            if init._scale is None:
                raise RuntimeError("SoftmaxHead: an unfitted head cannot start a fit")
            start = network_start(
                init.weights,
                old_scale=init._scale, old_classes=init.classes,
                new_scale=self._scale, new_classes=self.classes,
            )  # fmt: skip
        Xv, yv = None, None
        if X_val is not None and y_val is not None:
            keep, yv = known_rows(self.classes, y_val)
            Xv = self._scale(X_val[keep])
        self.weights, self.epochs_trained = fit_network(
            self._scale(X),
            codes,
            loss="softmax",
            outputs=len(self.classes),
            settings=self.settings,
            X_val=Xv,
            targets_val=yv,
            init=start,
        )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._scale is None:
            raise RuntimeError("SoftmaxHead: fit or load it first")
        return softmax(forward_numpy(self.weights, self._scale(X)))

    def save(self, directory: Path, name: str) -> None:
        if self._scale is None:
            raise RuntimeError("SoftmaxHead: nothing to save before fit")
        config = {
            "kind": self.kind,
            "classes": self.classes,
            "settings": asdict(self.settings),
            "epochs_trained": self.epochs_trained,
        }
        arrays = self.weights | {"mean": self._scale.mean, "std": self._scale.std}
        write_head(directory, name, config, arrays)

    @classmethod
    def load(cls, directory: Path, name: str) -> SoftmaxHead:
        config, arrays = read_head(directory, name, cls.kind)
        head = cls(FitSettings(**config["settings"]))
        head.classes = list(config["classes"])
        head.epochs_trained = int(config.get("epochs_trained", 0))
        head.weights = {k: arrays[k] for k in ("w1", "b1", "w2", "b2") if k in arrays}
        head._scale = Standardizer(arrays["mean"], arrays["std"])
        check_rows(name, head.weights["w2"].shape[1], head.classes)
        return head
