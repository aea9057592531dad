"""From head probabilities to consistent labels: pure numpy, no torch, no I/O.

The category head is primary. Coarser spaces are its marginals: p(domain d) is the sum of
p(category c) over the categories c of d (likewise group, archive), using the
category -> parents mapping stored in the bundle. A dedicated domain head may replace the
domain marginal when it was more accurate on validation (the bundle's config says which).

Decoding modes (which label is *predicted* in each space):
    top_down  domain = argmax; group = argmax among that domain's groups; archive = argmax
              among that group's archives; category = argmax among that archive's
              categories. The four labels always agree with the taxonomy.
    flat      category = argmax of the category head; domain/group/archive = its parents.
              Also always consistent, but ignores the evidence spread over sibling classes.
A label's score is always its (marginal) probability, so ``category.score`` may be below
``category_top_k[0].score`` in top_down mode when another archive's category is likelier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

DecodeMode = Literal["top_down", "flat"]
COARSE_SPACES: tuple[str, ...] = ("domain", "group", "archive")  # coarse -> fine


@dataclass(frozen=True)
class Scored:
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    domain: Scored
    category: Scored
    domain_top_k: list[Scored]
    category_top_k: list[Scored]
    group: Scored
    archive: Scored
    categories: list[Scored]
    """Multi-label: every category above its tuned threshold ([] without that head)."""


@dataclass(frozen=True)
class SpaceScores:
    """One label space for a batch: probabilities (n, k) and the decoded label index (n,)."""

    classes: list[str]
    probs: np.ndarray
    predicted: np.ndarray

    def predicted_labels(self) -> list[str]:
        return [self.classes[i] for i in self.predicted]


@dataclass(frozen=True)
class MultiLabelScores:
    classes: list[str]
    probs: np.ndarray  # (n, L)
    thresholds: np.ndarray  # (L,)


@dataclass(frozen=True)
class BatchScores:
    spaces: dict[str, SpaceScores]  # domain, group, archive, category
    categories: MultiLabelScores | None


def marginalize(p_category: np.ndarray, parents: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sum category probabilities (n, C) into parent labels: (sorted parents, (n, m))."""
    classes = sorted(set(parents))
    index = {label: j for j, label in enumerate(classes)}
    member = np.zeros((len(parents), len(classes)), dtype=np.float32)
    member[np.arange(len(parents)), [index[p] for p in parents]] = 1.0
    return classes, (p_category @ member).astype(np.float32)


def decode(
    p_category: np.ndarray,
    categories: Sequence[str],
    parents: Mapping[str, Mapping[str, str]],
    *,
    mode: DecodeMode = "top_down",
    domain: tuple[list[str], np.ndarray] | None = None,
) -> dict[str, SpaceScores]:
    """Scores for domain, group, archive and category from the category head's (n, C).

    ``parents[c]`` = {"domain": ..., "group": ..., "archive": ...} for every class c;
    ``domain`` = (classes, probs (n, D)) of a direct domain head to use instead of the marginal.
    """
    n = p_category.shape[0]
    chain: dict[str, list[str]] = {s: [parents[c][s] for c in categories] for s in COARSE_SPACES}
    chain["category"] = list(categories)
    probs: dict[str, tuple[list[str], np.ndarray]] = {"category": (list(categories), p_category)}
    for space in COARSE_SPACES:
        probs[space] = marginalize(p_category, chain[space])
    if domain is not None:
        probs["domain"] = (list(domain[0]), np.asarray(domain[1], dtype=np.float32))
    # which categories fall under each label of each space: (k_space, C) boolean
    under = {
        space: np.array([[p == label for p in chain[space]] for label in probs[space][0]])
        for space in (*COARSE_SPACES, "category")
    }
    allowed = np.ones((n, len(categories)), dtype=bool)  # categories still in play per row
    out: dict[str, SpaceScores] = {}
    if mode == "flat":
        best = p_category.argmax(axis=1)
        for space in (*COARSE_SPACES, "category"):
            classes, p = probs[space]
            index = {label: j for j, label in enumerate(classes)}
            predicted = np.array([index.get(chain[space][c], 0) for c in best], dtype=np.int64)
            out[space] = SpaceScores(classes, p, predicted)
        return out
    for space in (*COARSE_SPACES, "category"):
        classes, p = probs[space]
        reachable = (allowed.astype(np.float32) @ under[space].T.astype(np.float32)) > 0  # (n, k)
        reachable[~reachable.any(axis=1)] = True  # a head class with no category: no mask
        predicted = np.where(reachable, p, -1.0).argmax(axis=1)
        allowed &= under[space][predicted]
        out[space] = SpaceScores(classes, p, predicted.astype(np.int64))
    return out


def top_k_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` largest values of each row of ``probs`` (n, C), best first; ties
    keep column order (as argmax does). int64 (n, min(k, C)). Serving (``category_top_k``) and
    the top-k metrics (training.evaluate) both rank with this."""
    ranked: np.ndarray = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, probs.shape[1])]
    return ranked


def to_predictions(scores: BatchScores, *, k: int = 5) -> list[Prediction]:
    """One Prediction per row of ``scores``."""
    s = scores.spaces
    top = {space: top_k_indices(s[space].probs, k) for space in ("domain", "category")}

    def chosen(space: str, i: int) -> Scored:
        j = int(s[space].predicted[i])
        return Scored(s[space].classes[j], float(s[space].probs[i, j]))

    def ranked(space: str, i: int) -> list[Scored]:
        return [Scored(s[space].classes[j], float(s[space].probs[i, j])) for j in top[space][i]]

    out = []
    for i in range(s["category"].probs.shape[0]):
        multi: list[Scored] = []
        if scores.categories is not None:
            ml = scores.categories
            hits = np.flatnonzero(ml.probs[i] >= ml.thresholds)
            hits = hits[np.argsort(-ml.probs[i, hits], kind="stable")]
            multi = [Scored(ml.classes[j], float(ml.probs[i, j])) for j in hits]
        out.append(
            Prediction(
                domain=chosen("domain", i),
                category=chosen("category", i),
                domain_top_k=ranked("domain", i),
                category_top_k=ranked("category", i),
                group=chosen("group", i),
                archive=chosen("archive", i),
                categories=multi,
            )
        )
    return out
