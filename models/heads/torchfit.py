"""Mini-batch training of linear (or one-hidden-layer) heads with torch: what lets the heads
fit 300,000 papers x 384 dims x ~170 classes in a few minutes on 2 cores, where
scikit-learn's lbfgs needs a full pass per iteration and hundreds of iterations.

    weights = fit_network(X, targets, loss="softmax", hidden=0, X_val=..., targets_val=...)
    weights["w2"], weights["b2"]      # float32 (d, k), (k,) for a linear head

``X`` is a dense float32 array; ``targets`` are class codes (softmax) or a 0/1 matrix (bce,
multi-label). Early stopping on the validation
loss keeps the best epoch's weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

Loss = Literal["softmax", "bce"]


@dataclass(frozen=True)
class FitSettings:
    """How a head is trained; every field is recorded in the head's config."""

    hidden: int = 0
    """0 = linear (multinomial logistic regression); > 0 = one ReLU layer of that width."""
    dropout: float = 0.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    """AdamW's decoupled weight decay (the L2 strength of a linear head)."""
    batch_size: int = 512
    max_epochs: int = 40
    patience: int = 3
    seed: int = 0


def fit_network(
    X: np.ndarray,
    targets: np.ndarray,
    *,
    loss: Loss,
    outputs: int,
    settings: FitSettings,
    X_val: Any = None,
    targets_val: np.ndarray | None = None,
    init: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Train; returns ({"w1", "b1" (if hidden), "w2", "b2"} float32 numpy, best epoch).

    Without a validation set the last epoch's weights are kept after ``max_epochs``.
    ``init``: starting weights of the same shapes (a retrain's warm start,
    models.heads.warm.network_start); with a validation set, the start itself is the first
    candidate, so a fit never keeps weights that validate worse than where it began.
    """
    import torch

    torch.manual_seed(settings.seed)
    d = X.shape[1]
    layers: list[Any] = []
    if settings.hidden > 0:
        layers += [
            torch.nn.Linear(d, settings.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(settings.dropout),
        ]
        layers.append(torch.nn.Linear(settings.hidden, outputs))
    else:
        layers.append(torch.nn.Linear(d, outputs))
    net = torch.nn.Sequential(*layers)
    if init is not None:
        net.load_state_dict(state_of(init))
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    criterion = _criterion(loss)
    gen = np.random.default_rng(settings.seed)
    has_val = X_val is not None and targets_val is not None and len(targets_val) > 0
    best_loss, best_state, best_epoch, stale = float("inf"), copy_state(net), 0, 0
    if init is not None and has_val:
        best_loss = evaluate_loss(net, X_val, targets_val, loss)  # type: ignore[arg-type]
    for epoch in range(1, settings.max_epochs + 1):
        net.train()
        order = gen.permutation(X.shape[0])
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            opt.zero_grad()
            criterion(net(_tensor(X, rows)), _targets(targets, rows, loss)).backward()
            opt.step()
        if not has_val:
            best_state, best_epoch = copy_state(net), epoch
            continue
        value = evaluate_loss(net, X_val, targets_val, loss)  # type: ignore[arg-type]
        log.debug("epoch %d: validation loss %.4f", epoch, value)
        if value < best_loss - 1e-4:
            best_loss, best_state, best_epoch, stale = value, copy_state(net), epoch, 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    return _as_weights(best_state, hidden=settings.hidden > 0), best_epoch


def evaluate_loss(net: Any, X: Any, targets: np.ndarray, loss: Loss, chunk: int = 8192) -> float:
    """Mean loss over ``X`` in chunks (bounded memory)."""
    import torch

    criterion = _criterion(loss, reduction="sum")
    net.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, X.shape[0], chunk):
            rows = np.arange(start, min(start + chunk, X.shape[0]))
            total += float(criterion(net(_tensor(X, rows)), _targets(targets, rows, loss)))
    per: int = X.shape[0] * (targets.shape[1] if loss == "bce" else 1)
    return total / max(per, 1)


def _criterion(loss: Loss, reduction: str = "mean") -> Any:
    import torch

    if loss == "softmax":
        return torch.nn.CrossEntropyLoss(reduction=reduction)
    return torch.nn.BCEWithLogitsLoss(reduction=reduction)


def _tensor(X: np.ndarray, rows: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(X[rows], dtype=np.float32))


def _targets(targets: np.ndarray, rows: np.ndarray, loss: Loss) -> Any:
    import torch

    if loss == "softmax":
        return torch.from_numpy(targets[rows].astype(np.int64))
    return torch.from_numpy(targets[rows].astype(np.float32))


def copy_state(net: Any) -> dict[str, np.ndarray]:
    """A torch module's parameters as float32 numpy copies."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in net.state_dict().items()
    }


def _as_weights(state: dict[str, np.ndarray], *, hidden: bool) -> dict[str, np.ndarray]:
    if hidden:
        return {
            "w1": state["0.weight"].T.copy(),
            "b1": state["0.bias"],
            "w2": state["3.weight"].T.copy(),
            "b2": state["3.bias"],
        }
    return {"w2": state["0.weight"].T.copy(), "b2": state["0.bias"]}


def state_of(weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """``_as_weights`` inverted: saved weights as the state dict of ``fit_network``'s net
    (and of MLPHead's, which has the same layout)."""
    import torch

    def tensor(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    if "w1" in weights:
        return {
            "0.weight": tensor(weights["w1"].T),
            "0.bias": tensor(weights["b1"]),
            "3.weight": tensor(weights["w2"].T),
            "3.bias": tensor(weights["b2"]),
        }
    return {"0.weight": tensor(weights["w2"].T), "0.bias": tensor(weights["b2"])}


def forward_numpy(weights: dict[str, np.ndarray], X: Any) -> np.ndarray:
    """Logits float32 (n, k) from saved weights, with numpy/scipy alone (serving path)."""
    h = X
    if "w1" in weights:
        h = np.maximum(np.asarray(X @ weights["w1"]) + weights["b1"], 0.0)
    logits: np.ndarray = np.asarray(h @ weights["w2"], dtype=np.float32) + weights["b2"]
    return logits
