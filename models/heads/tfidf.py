"""A sparse text head: TF-IDF of words and word pairs -> linear scores -> softmax.

It reads the paper's text, not its embedding, and is fused with the embedding head
(``fuse_log_linear``) because the two make different mistakes: the words carry exact
technical terms ("Calabi-Yau", "LLM"), the embedding carries paraphrase. Measured gains are
in docs/quality.md.

    head = TfidfHead().fit(train_texts, y, texts_val=val_texts, y_val=y_val)
    P = head.predict_proba_texts(texts)      # float32 (n, len(head.classes))

Saved as data, never pickled: the vocabulary (terms in column order) in ``<name>.json``;
idf, weights (float16: logits need no more) and bias in ``<name>.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.heads.common import check_rows, encode_labels, read_head, softmax, write_head
from models.heads.torchfit import FitSettings, forward_numpy


@dataclass(frozen=True)
class TfidfSettings:
    max_features: int = 100_000
    """Vocabulary size (most frequent terms); weights are max_features x classes."""
    min_df: int = 3
    ngram_max: int = 2


class TfidfHead:
    """TF-IDF (sublinear tf, l2 rows) -> linear softmax."""

    kind: ClassVar[str] = "tfidf-linear"

    def __init__(
        self, tfidf: TfidfSettings | None = None, fit_settings: FitSettings | None = None
    ) -> None:
        self.tfidf = tfidf or TfidfSettings()
        self.fit_settings = fit_settings or FitSettings(weight_decay=1e-6, max_epochs=6)
        """``weight_decay``: SGD's L2 alpha; ``max_epochs``: passes over the data."""
        self.classes: list[str] = []
        self.vocabulary: list[str] = []
        self.idf = np.zeros(0, dtype=np.float32)
        self.weights: dict[str, np.ndarray] = {}
        self.epochs_trained = 0
        self._vectorizer: Any = None

    def fit(
        self,
        texts: Sequence[str],
        y: Sequence[str],
        *,
        texts_val: Sequence[str] | None = None,
        y_val: Sequence[str] | None = None,
    ) -> TfidfHead:
        """Fit the vocabulary and the weights on (texts, y). ``texts_val``/``y_val`` are
        accepted like the other heads' but not needed: SGD runs a fixed number of passes, and
        the caller tunes the fusion weight on validation."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.classes, codes = encode_labels(y)
        vectorizer = TfidfVectorizer(
            **self._vectorizer_options(),
            min_df=min(self.tfidf.min_df, max(1, len(texts) // 100)),
            max_features=self.tfidf.max_features,
        )
        X = vectorizer.fit_transform(list(texts))
        order = sorted(vectorizer.vocabulary_.items(), key=lambda item: item[1])
        self.vocabulary = [term for term, _ in order]
        self.idf = vectorizer.idf_.astype(np.float32)
        self._vectorizer = vectorizer
        # One-vs-rest logistic regression by SGD over the sparse rows: a few passes over 270k
        # papers take a minute or two on 2 cores (a torch softmax over sparse CSR batches took
        # over 7 minutes at 24k papers here). Served as softmax(X W + b) over the saved weights.
        from sklearn.linear_model import SGDClassifier

        model = SGDClassifier(
            loss="log_loss",
            alpha=self.fit_settings.weight_decay or 1e-6,
            max_iter=self.fit_settings.max_epochs,
            tol=None,
            random_state=self.fit_settings.seed,
            n_jobs=-1,
        ).fit(X, codes)
        self.epochs_trained = int(model.n_iter_)
        # stored as float16: predict with exactly what a reload will have
        self.weights = {
            "w2": model.coef_.T.astype(np.float16).astype(np.float32),
            "b2": model.intercept_.astype(np.float32),
        }
        return self

    def _vectorizer_options(self) -> dict[str, Any]:
        return {
            "lowercase": True,
            "ngram_range": (1, self.tfidf.ngram_max),
            "sublinear_tf": True,
            "dtype": np.float32,
        }

    def predict_proba_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectorizer is None:
            raise RuntimeError("TfidfHead: fit or load it first")
        return softmax(forward_numpy(self.weights, self._vectorizer.transform(list(texts))))

    def save(self, directory: Path, name: str) -> None:
        if self._vectorizer is None:
            raise RuntimeError("TfidfHead: nothing to save before fit")
        config = {
            "kind": self.kind,
            "classes": self.classes,
            "tfidf": asdict(self.tfidf),
            "fit_settings": asdict(self.fit_settings),
            "epochs_trained": self.epochs_trained,
            "vocabulary": self.vocabulary,
        }
        arrays = {
            "idf": self.idf,
            "w2": self.weights["w2"].astype(np.float16),
            "b2": self.weights["b2"],
        }
        write_head(directory, name, config, arrays)

    @classmethod
    def load(cls, directory: Path, name: str) -> TfidfHead:
        from sklearn.feature_extraction.text import TfidfVectorizer

        config, arrays = read_head(directory, name, cls.kind)
        head = cls(TfidfSettings(**config["tfidf"]), FitSettings(**config["fit_settings"]))
        head.classes = list(config["classes"])
        head.epochs_trained = int(config.get("epochs_trained", 0))
        head.vocabulary = list(config["vocabulary"])
        head.idf = arrays["idf"]
        head.weights = {"w2": arrays["w2"].astype(np.float32), "b2": arrays["b2"]}
        vectorizer = TfidfVectorizer(
            **head._vectorizer_options(),
            vocabulary={term: i for i, term in enumerate(head.vocabulary)},
        )
        vectorizer.idf_ = head.idf
        head._vectorizer = vectorizer
        check_rows(name, head.weights["w2"].shape[1], head.classes)
        return head


def align_columns(probs: np.ndarray, classes: list[str], target: list[str]) -> np.ndarray:
    """``probs`` (n, len(classes)) rearranged to ``target``'s columns. A target class the text
    head never saw (the kNN blend also outputs secondary-only categories) gets the uniform
    1/len(classes): in the log-linear fusion that leaves its embedding score as it was,
    relative to a class the text head is indifferent about. Rows are renormalised."""
    if classes == target:
        return probs
    index = {c: i for i, c in enumerate(classes)}
    out = np.full((probs.shape[0], len(target)), 1.0 / len(classes), dtype=np.float32)
    for j, name in enumerate(target):
        if name in index:
            out[:, j] = probs[:, index[name]]
    aligned: np.ndarray = out / out.sum(axis=1, keepdims=True)
    return aligned


def fuse_log_linear(p_embedding: np.ndarray, p_text: np.ndarray, text_weight: float) -> np.ndarray:
    """softmax((1 - w) log p_embedding + w log p_text): the product of experts, weighted.
    Both (n, C) over the same classes in the same order."""
    if text_weight <= 0.0:
        return p_embedding
    logits = (1.0 - text_weight) * np.log(np.maximum(p_embedding, 1e-12)) + text_weight * np.log(
        np.maximum(p_text, 1e-12)
    )
    return softmax(logits)
