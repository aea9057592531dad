"""Starting a head's fit from an earlier fit of the same head: a retrain's warm start.

A retrain after a few new papers fits nearly the same weights again. Starting from the
incumbent's weights instead of from random or zero ones lets lbfgs and the early-stopped
torch fits stop after a few steps. The earlier weights act on inputs standardised with the
earlier mean and std; ``rebase_linear`` re-expresses them exactly for the new standardiser,
so the start computes the same function as the incumbent. Output rows follow the classes by
name (``align_outputs``): a class the earlier fit knew keeps its row; a class it did not know
starts with zero weights and the lowest earlier bias (unlikely until the data says
otherwise); a class that is gone loses its row.

Shapes: ``coef`` is (outputs, inputs), as scikit-learn stores it; the torch heads store
``w`` as (inputs, outputs) and transpose on the way in and out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.heads.common import Standardizer


def rebase_linear(
    coef: np.ndarray, intercept: np.ndarray, old: Standardizer, new: Standardizer
) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) acting on ``new``-standardised inputs that give the same outputs as
    ``coef``/``intercept`` on ``old``-standardised ones.

    With z_old = (x - m_old) / s_old and x = z_new * s_new + m_new:
    coef @ z_old + b = (coef * s_new / s_old) @ z_new + (b + coef @ ((m_new - m_old) / s_old)).
    """
    ratio = (new.std / old.std).astype(np.float64)
    shift = ((new.mean - old.mean) / old.std).astype(np.float64)
    coef64 = np.asarray(coef, dtype=np.float64)
    rebased = (coef64 * ratio).astype(np.float32)
    bias = (np.asarray(intercept, dtype=np.float64) + coef64 @ shift).astype(np.float32)
    return rebased, bias


def align_outputs(
    coef: np.ndarray,
    intercept: np.ndarray,
    old_classes: Sequence[str],
    new_classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``coef`` (outputs, inputs) and ``intercept`` reordered to ``new_classes``; see
    the module doc for classes that are new or gone."""
    index = {c: i for i, c in enumerate(old_classes)}
    out = np.zeros((len(new_classes), coef.shape[1]), dtype=np.float32)
    floor = float(np.min(intercept)) if len(intercept) else 0.0
    bias = np.full(len(new_classes), floor, dtype=np.float32)
    for j, name in enumerate(new_classes):
        i = index.get(name)
        if i is not None:
            out[j], bias[j] = coef[i], intercept[i]
    return out, bias


def linear_start(
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    old_scale: Standardizer,
    old_classes: Sequence[str],
    new_scale: Standardizer,
    new_classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """An earlier linear layer (outputs = ``old_classes``) as the start of a fit on new
    standardised inputs with outputs ``new_classes``: ``rebase_linear`` then ``align_outputs``."""
    rebased, bias = rebase_linear(coef, intercept, old_scale, new_scale)
    return align_outputs(rebased, bias, old_classes, new_classes)


def network_start(
    weights: dict[str, np.ndarray],
    *,
    old_scale: Standardizer,
    old_classes: Sequence[str],
    new_scale: Standardizer,
    new_classes: Sequence[str],
) -> dict[str, np.ndarray]:
    """Saved torch-head weights (``w2``/``b2``, and ``w1``/``b1`` with a hidden layer; ``w`` as
    (inputs, outputs)) as the start of a fit on new inputs and classes.

    Only the layer that reads the inputs is rebased; with a hidden layer the output layer
    reads hidden units, which the rebase leaves unchanged, so it is only aligned.
    """
    if "w1" in weights:
        w1, b1 = rebase_linear(weights["w1"].T, weights["b1"], old_scale, new_scale)
        w2, b2 = align_outputs(weights["w2"].T, weights["b2"], old_classes, new_classes)
        return {"w1": w1.T.copy(), "b1": b1, "w2": w2.T.copy(), "b2": b2}
    w2, b2 = linear_start(
        weights["w2"].T,
        weights["b2"],
        old_scale=old_scale,
        old_classes=old_classes,
        new_scale=new_scale,
        new_classes=new_classes,
    )
    return {"w2": w2.T.copy(), "b2": b2}
