"""Load a model version and classify paper texts. Needs only models/ (no training code).

    clf = PaperClassifier.load(models_dir / "m20261121-230501-3fa2", device="auto")
    preds = clf.predict_texts([paper.text for paper in papers], top_k=5)   # list[Prediction]
    clf.version                                                           # "m20261121-..."

The embedder runs with the variant the bundle was trained on (fp16 bundles fall back to
fp32 on CPU, where fp16 is not supported here); ``embedder_variant`` says which ran.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelFormatError
from models.bundle import BundleConfig, read_config
from models.device import resolve_device
from models.embedder import Embedder
from models.heads import load_head
from models.predict import BatchScores, MultiLabelScores, Prediction, decode, to_predictions

log = logging.getLogger(__name__)


class PaperClassifier:
    """A loaded bundle: heads in memory, plus the embedder unless loaded without one."""

    def __init__(
        self, config: BundleConfig, heads: dict[str, Any], embedder: Embedder | None, path: Path
    ) -> None:
        self.config = config
        self.heads = heads
        self.embedder = embedder
        self.path = path
        self.version: str = config.version
        self._check()

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        device: str = "auto",
        batch_size: int = 64,
        with_embedder: bool = True,
        variant: str | None = None,
    ) -> PaperClassifier:
        """Read ``model_dir``; ModelNotFoundError / ModelFormatError say how to make one.

        ``with_embedder=False`` loads heads only (for ``predict_embeddings``);
        ``variant`` overrides the bundle's embedder variant (not recommended).
        """
        model_dir = Path(model_dir)
        config = read_config(model_dir)
        heads = {role: load_head(model_dir, info.file) for role, info in config.heads.items()}
        embedder = None
        if with_embedder:
            resolved = resolve_device(device)
            chosen = variant or config.embedder.variant
            if chosen == "fp16" and not resolved.startswith("cuda"):
                log.warning(
                    "model %s was embedded in fp16; using fp32 on %s", config.version, resolved
                )
                chosen = "fp32"
            embedder = Embedder(
                config.embedder.name, device=resolved, variant=chosen, batch_size=batch_size
            )
            if embedder.dim != config.embedder.dim:
                raise ModelFormatError(
                    f"{model_dir}: embedder {config.embedder.name!r} gives {embedder.dim}-d "
                    f"vectors, the heads expect {config.embedder.dim}-d"
                )
        return cls(config, heads, embedder, model_dir)

    def _check(self) -> None:
        category = self.heads["category"]
        if list(category.classes) != self.config.label_spaces["category"]:
            raise ModelFormatError(f"{self.path}: category head classes differ from config")
        missing = set(category.classes) - set(self.config.category_parents)
        if missing:
            raise ModelFormatError(f"{self.path}: no parents for categories {sorted(missing)[:5]}")

    @property
    def embedder_variant(self) -> str | None:
        return self.embedder.variant if self.embedder else None

    @property
    def model_id(self) -> str:
        """The embedding model id the heads were trained on (cache key)."""
        return self.config.embedder.model_id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dim) unit vectors."""
        if self.embedder is None:
            raise RuntimeError("classifier loaded with with_embedder=False")
        return self.embedder.encode(texts)

    def score_embeddings(self, X: np.ndarray) -> BatchScores:
        """Probabilities and decoded labels for embeddings float32 (n, dim)."""
        decoding = self.config.decoding
        p_category = self.heads["category"].predict_proba(X)
        domain = None
        if decoding.get("domain_source") == "head" and "domain" in self.heads:
            head = self.heads["domain"]
            domain = (list(head.classes), head.predict_proba(X))
        spaces = decode(
            p_category,
            self.heads["category"].classes,
            self.config.category_parents,
            mode=decoding.get("mode", "top_down"),
            domain=domain,
        )
        multi = None
        if "categories" in self.heads:
            head = self.heads["categories"]
            multi = MultiLabelScores(list(head.classes), head.predict_proba(X), head.thresholds)
        return BatchScores(spaces, multi)

    def predict_embeddings(self, X: np.ndarray, *, top_k: int = 5) -> list[Prediction]:
        return to_predictions(self.score_embeddings(X), k=top_k)

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
        """One Prediction per text (``Paper.text``: "title. abstract"), input order."""
        if not texts:
            return []
        return self.predict_embeddings(self.embed(texts), top_k=top_k)
