"""Human-facing artefacts of a training run: per-class report (JSON) and confusion PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from models.predict import BatchScores
from training.labels import SINGLE_LABEL_SPACES, PaperLabels


def per_class_report(scores: BatchScores, labels: Sequence[PaperLabels]) -> dict[str, Any]:
    """``{space: {label: {precision, recall, f1, support}}}`` for the single-label spaces."""
    out: dict[str, Any] = {}
    for space in SINGLE_LABEL_SPACES:
        truth = [lab.get(space) for lab in labels]
        predicted = scores.spaces[space].predicted_labels()
        classes = sorted(set(truth) | set(predicted))
        p, r, f, s = precision_recall_fscore_support(
            truth, predicted, labels=classes, zero_division=0
        )
        out[space] = {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        }
    return out


_TICK_CHAR_IN = 0.075
"""Width of one character of an 8-pt tick label, in inches (with a little to spare)."""


def confusion_png(truth: Sequence[str], predicted: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts.

    The margins are set from the longest class name instead of by ``tight_layout``, which
    draws the whole figure once more to measure it (~40% of the rendering time)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    classes = sorted(set(truth) | set(predicted))
    counts = confusion_matrix(truth, predicted, labels=classes)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.38 * len(classes) + 2.5)
    width, height = size + 1.5, size
    labels_in = _TICK_CHAR_IN * max(len(c) for c in classes) + 0.5  # tick labels + axis label
    labels_in = min(labels_in, 0.45 * height)  # a very long name is cut rather than refused
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=labels_in / width, right=1 - 0.9 / width,  # the colour bar and its label
        bottom=labels_in / height, top=1 - 0.4 / height,
    )  # fmt: skip
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(classes) <= 40:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=color
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true row")
    fig.savefig(path, dpi=110)
