"""One-hidden-layer MLP head (fit with torch, predicts with numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

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
from models.heads.torchfit import copy_state, state_of
from models.heads.warm import network_start


# --- MLP --------------------------------------------------------------------------------------
class MLPHead:
    """Linear(d, hidden) -> ReLU -> Dropout -> Linear(hidden, k); AdamW, early stopping.

    ``fit`` holds out ``val_fraction`` of the training rows for early stopping unless a
    validation set is given; the weights of the best validation loss are kept.
    """

    kind: ClassVar[str] = "mlp"

    def __init__(
        self,
        *,
        hidden: int = 1024,
        dropout: float = 0.5,
        lr: float = 3e-4,
        weight_decay: float = 1e-2,
        batch_size: int = 128,
        max_epochs: int = 200,
        patience: int = 15,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.hidden, self.dropout, self.lr, self.weight_decay = hidden, dropout, lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.val_fraction, self.seed = val_fraction, seed
        self.classes: list[str] = []
        self.weights: dict[str, np.ndarray] = {}
        self.epochs_trained = 0  # epoch of the kept (best validation loss) weights
        self.epochs_run = 0
        self._scale: Standardizer | None = None

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        X_val: np.ndarray | None = None,
        y_val: Sequence[str] | None = None,
        init: MLPHead | None = None,
    ) -> MLPHead:
        """Fit on (X, y) with early stopping; ``init``: an earlier fit of the same width to
        start from (a retrain's warm start), whose start is also the first kept candidate."""
        import torch

        self.classes, codes = encode_labels(y)
        X_tr, y_tr, X_va, y_va = self._early_stopping_split(X, codes, X_val, y_val)
        self._scale = Standardizer.fit(X_tr)
        torch.manual_seed(self.seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], self.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden, len(self.classes)),
        )
        if init is not None:
            net.load_state_dict(self._start_state(init))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt, yt = torch.from_numpy(self._scale(X_tr)), torch.from_numpy(y_tr)
        xv, yv = torch.from_numpy(self._scale(X_va)), torch.from_numpy(y_va)
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state, stale = float("inf"), copy_state(net), 0
        if init is not None and len(yv):
            with torch.no_grad():
                best = float(torch.nn.functional.cross_entropy(net.eval()(xv), yv))
        for epoch in range(self.max_epochs):
            self.epochs_run = epoch + 1
            net.train()
            # torch.split / torch.autograd.backward: the typed spellings of
            # Tensor.split / Tensor.backward (same calls underneath)
            for idx in torch.split(torch.randperm(len(yt), generator=gen), self.batch_size):
                opt.zero_grad()
                torch.autograd.backward(torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]))
                opt.step()
            net.eval()
            with torch.no_grad():
                loss = float(torch.nn.functional.cross_entropy(net(xv), yv)) if len(yv) else 0.0
            if loss < best - 1e-4:
                best, best_state, stale, self.epochs_trained = loss, copy_state(net), 0, epoch + 1
            else:
                stale += 1
                if stale >= self.patience:
                    break
        self.weights = {
            "w1": best_state["0.weight"].T,
            "b1": best_state["0.bias"],
            "w2": best_state["3.weight"].T,
            "b2": best_state["3.bias"],
        }
        return self

    def _start_state(self, init: MLPHead) -> dict[str, Any]:
        """``init``'s weights rebased to this fit's standardiser and classes, as the state
        dict of ``fit``'s net (the same layout as torchfit's hidden-layer net)."""
        if init._scale is None or self._scale is None or init.hidden != self.hidden:
            raise RuntimeError("MLPHead: can only start from a fitted head of the same width")
        start = network_start(
            init.weights,
            old_scale=init._scale, old_classes=init.classes,
            new_scale=self._scale, new_classes=self.classes,
        )  # fmt: skip
        return state_of(start)

    def _early_stopping_split(
        self,
        X: np.ndarray,
        codes: np.ndarray,
        X_val: np.ndarray | None,
        y_val: Sequence[str] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(X_train, y_train, X_val, y_val): the given validation rows of known classes, or
        a seeded random ``val_fraction`` of the training rows."""
        if X_val is not None and y_val is not None:
            keep, y_keep = known_rows(self.classes, y_val)
            return X, codes, X_val[keep], y_keep
        order = np.random.default_rng(self.seed).permutation(len(codes))
        n_val = max(1, round(len(codes) * self.val_fraction))
        va, tr = order[:n_val], order[n_val:]
        return X[tr], codes[tr], X[va], codes[va]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._scale is None:
            raise RuntimeError("MLPHead: fit or load it first")
        w = self.weights
        hidden = np.maximum(self._scale(X) @ w["w1"] + w["b1"], 0.0)
        return softmax(hidden @ w["w2"] + w["b2"])

    def save(self, directory: Path, name: str) -> None:
        if self._scale is None:
            raise RuntimeError("MLPHead: nothing to save before fit")
        config = {
            "kind": self.kind,
            "classes": self.classes,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "seed": self.seed,
            "epochs_trained": self.epochs_trained,
        }
        arrays = self.weights | {"mean": self._scale.mean, "std": self._scale.std}
        write_head(directory, name, config, arrays)

    @classmethod
    def load(cls, directory: Path, name: str) -> MLPHead:
        config, arrays = read_head(directory, name, cls.kind)
        params = ("hidden", "dropout", "lr", "weight_decay", "batch_size", "patience", "seed")
        head = cls(**{k: config[k] for k in params})
        head.classes = list(config["classes"])
        head.epochs_trained = int(config.get("epochs_trained", 0))
        head.weights = {k: arrays[k] for k in ("w1", "b1", "w2", "b2")}
        head._scale = Standardizer(arrays["mean"], arrays["std"])
        check_rows(name, head.weights["w2"].shape[1], head.classes)
        return head
