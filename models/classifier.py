"""Load a model version and classify paper texts. Needs only models/ (no training code).

    clf = PaperClassifier.load(models_dir / "m20261121-230501-3fa2", device="auto")
    preds = clf.predict_texts([paper.text for paper in papers], top_k=5)   # list[Prediction]
    clf.version                                                           # "m20261121-..."

The embedder runs with the variant the bundle was trained on (fp16 bundles fall back to
fp32 on CPU, where fp16 is not supported here; bf16 ones to their fp32 twin on a CPU where
bf16 is slower: ``serving_variant``); ``embedder_variant`` says which ran.
A fine-tuned encoder bundle (config ``encoder``, no embedder) has one head that reads the
texts itself (models.finetuned); ``predict_texts`` and ``score_texts`` work the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from core.errors import ModelFormatError
from core.machine import serial_blas
from models.bundle import FINETUNED_KIND, BundleConfig, HeadInfo, read_config
from models.device import resolve_device
from models.embedder import (
    AnyEmbedder,
    DeferredEmbedder,
    Embedder,
    cpu_has_native_bf16,
    openvino_available,
)
from models.finetuned import FinetunedEncoderHead
from models.heads import (
    Head,
    MultiLabelHead,
    StoredHead,
    TfidfHead,
    align_columns,
    fuse_log_linear,
    load_head,
)
from models.predict import BatchScores, MultiLabelScores, Prediction, decode, to_predictions

log = logging.getLogger(__name__)

H = TypeVar("H")
BundleHead = StoredHead | FinetunedEncoderHead
"""What a bundle's role holds: a head of models.heads, or a fine-tuned encoder."""


class PaperClassifier:
    """A loaded bundle: heads in memory, plus the embedder unless loaded without one."""

    def __init__(
        self,
        config: BundleConfig,
        heads: dict[str, BundleHead],
        embedder: AnyEmbedder | None,
        path: Path,
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
        batch_size: int | None = None,
        with_embedder: bool = True,
        variant: str | None = None,
        num_threads: int | None = None,
        defer_embedder: bool = False,
    ) -> PaperClassifier:
        """Read ``model_dir``; ModelNotFoundError / ModelFormatError say how to make one.
        ``num_threads``: CPU threads for the embedder (default: every core this process may
        use; ``up --workers N`` gives each worker its share).

        ``with_embedder=False`` loads heads only (for ``predict_embeddings``; a fine-tuned
        encoder is a head, so it is loaded all the same);
        ``variant`` overrides the bundle's embedder variant (not recommended);
        ``defer_embedder``: load the embedder only when a text has to be embedded
        (models.embedder.DeferredEmbedder: an evaluation whose texts are cached never does).
        """
        model_dir = Path(model_dir)
        config = read_config(model_dir)
        heads = {
            role: _load_head(model_dir, info, device=device, batch_size=batch_size or 32)
            for role, info in config.heads.items()
        }
        embedder = None
        if with_embedder and config.embedder is not None:
            resolved = resolve_device(device)
            chosen = serving_variant(variant or config.embedder.variant, resolved, config.version)
            if defer_embedder:
                return cls(config, heads, DeferredEmbedder(
                    config.embedder.name, variant=chosen, dim=config.embedder.dim,
                    max_seq_length=config.embedder.max_seq_length, device=resolved,
                    batch_size=batch_size, num_threads=num_threads,
                ), model_dir)  # fmt: skip
            embedder = Embedder(
                config.embedder.name,
                device=resolved,
                variant=chosen,
                batch_size=batch_size,
                num_threads=num_threads,
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
        text = self.heads.get("text")
        if text is not None and not set(text.classes) <= set(category.classes):
            raise ModelFormatError(f"{self.path}: text head has classes the category head lacks")
        missing = set(category.classes) - set(self.config.category_parents)
        if missing:
            raise ModelFormatError(f"{self.path}: no parents for categories {sorted(missing)[:5]}")

    def _embedding_head(self, role: str) -> Head:
        """The head of ``role`` (category, domain, categories): one that reads embeddings."""
        head = self.heads[role]
        if not isinstance(head, Head):
            raise ModelFormatError(
                f"{self.path}: the {role!r} head ({head.kind}) reads no embeddings"
            )
        return head

    def _role(self, role: str, kind: type[H]) -> H:
        """The head of ``role`` as the one class that role needs (text, categories, encoder)."""
        head = self.heads[role]
        if not isinstance(head, kind):
            raise ModelFormatError(f"{self.path}: the {role!r} head is a {head.kind!r} head")
        return head

    @property
    def embedder_variant(self) -> str | None:
        return self.embedder.variant if self.embedder else None

    @property
    def model_id(self) -> str:
        """The embedding model id the heads were trained on (cache key), or the fine-tuned
        encoder's id."""
        return self.config.model_id

    @property
    def reads_text(self) -> bool:
        """True for a fine-tuned encoder: it scores texts, not embeddings."""
        return self.config.encoder is not None

    @property
    def concurrent_batches(self) -> int:
        """``predict`` calls worth running at once (the stream worker overlaps this many
        batches): the loaded embedder's ``concurrent_calls``, else 1."""
        return self.embedder.concurrent_calls if isinstance(self.embedder, Embedder) else 1

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (n, dim) unit vectors."""
        if self.embedder is None:
            raise RuntimeError("classifier loaded with with_embedder=False")
        return self.embedder.encode(texts)

    def score_texts(self, texts: Sequence[str]) -> BatchScores:
        """Probabilities and decoded labels for paper texts (``Paper.text``)."""
        if self.reads_text:
            encoder = self._role("category", FinetunedEncoderHead)
            return self.score_category_probs(encoder.predict_texts(texts))
        return self.score_embeddings(self.embed(texts), texts=texts)

    @property
    def text_weight(self) -> float:
        """Weight of the TF-IDF text head in the category fusion (0: no text head)."""
        return float(self.config.decoding.get("text_weight", 0.0)) if "text" in self.heads else 0.0

    def score_embeddings(self, X: np.ndarray, *, texts: Sequence[str] | None = None) -> BatchScores:
        """Probabilities and decoded labels for embeddings float32 (n, dim); ``texts`` (the
        same papers' ``Paper.text``) are needed when the bundle fuses a text head."""
        if self.reads_text:
            raise RuntimeError(f"model {self.version} is a fine-tuned encoder: use score_texts")
        with serial_blas(len(X)):
            return self._score_embeddings(X, texts)

    def _score_embeddings(self, X: np.ndarray, texts: Sequence[str] | None) -> BatchScores:
        category = self._embedding_head("category")
        p_category = category.predict_proba(X)
        if self.text_weight > 0.0:
            if texts is None or len(texts) != len(X):
                raise ValueError(f"model {self.version} fuses a text head: pass the texts too")
            text = self._role("text", TfidfHead)
            p_text = align_columns(text.predict_proba_texts(texts), text.classes, category.classes)
            p_category = fuse_log_linear(p_category, p_text, self.text_weight)
        decoding = self.config.decoding
        domain = None
        if decoding.get("domain_source") == "head" and "domain" in self.heads:
            head = self._embedding_head("domain")
            domain = (list(head.classes), head.predict_proba(X))
        multi = None
        if "categories" in self.heads:
            labels = self._role("categories", MultiLabelHead)
            multi = MultiLabelScores(
                list(labels.classes), labels.predict_proba(X), labels.thresholds
            )
        return self.score_category_probs(p_category, domain, multi)

    def score_category_probs(
        self,
        p_category: np.ndarray,
        domain: tuple[list[str], np.ndarray] | None = None,
        multi: MultiLabelScores | None = None,
    ) -> BatchScores:
        """Decode category probabilities (n, C) with this bundle's decoding and parents."""
        spaces = decode(
            p_category,
            self.heads["category"].classes,
            self.config.category_parents,
            mode=self.config.decoding.get("mode", "top_down"),
            domain=domain,
        )
        return BatchScores(spaces, multi)

    def predict_embeddings(
        self, X: np.ndarray, *, top_k: int = 5, texts: Sequence[str] | None = None
    ) -> list[Prediction]:
        return to_predictions(self.score_embeddings(X, texts=texts), k=top_k)

    def predict_with_embeddings(
        self, texts: Sequence[str], *, top_k: int = 5
    ) -> tuple[list[Prediction], np.ndarray | None]:
        """``predict_texts`` plus the texts' embeddings float32 (n, dim), from the same
        pass (None for a fine-tuned encoder, which has no sentence embedding)."""
        if self.reads_text:
            return self.predict_texts(texts, top_k=top_k), None
        if not texts:
            return [], np.zeros((0, 0), dtype=np.float32)
        X = self.embed(texts)
        return to_predictions(self.score_embeddings(X, texts=texts), k=top_k), X

    def predict_texts(self, texts: Sequence[str], *, top_k: int = 5) -> list[Prediction]:
        """One Prediction per text (``Paper.text``: "title. abstract"), input order."""
        if not texts:
            return []
        return to_predictions(self.score_texts(texts), k=top_k)


def serving_variant(trained: str, device: str, version: str) -> str:
    """The embedder variant to serve a bundle trained with ``trained`` on ``device``: the same
    one where it runs there; fp16 (CUDA) -> fp32 off CUDA, OpenVINO variants -> fp32 off the
    CPU or without the openvino package, bf16 -> its fp32 twin on a CPU where bf16 is slower
    (cosine >= 0.9999 between them all, so the heads still fit)."""
    if trained == "fp16" and not device.startswith("cuda"):
        log.warning("model %s was embedded in fp16; using fp32 on %s", version, device)
        return "fp32"
    if trained.startswith("ov-") and (device != "cpu" or not openvino_available()):
        log.warning("model %s was embedded with %s; using fp32 on %s", version, trained, device)
        return "fp32"
    if trained in _FP32_OF and device == "cpu" and not cpu_has_native_bf16():
        # bf16 would run here, but slower than fp32 (models.embedder.cpu_has_native_bf16)
        log.info("model %s was embedded with %s; %s is faster on this CPU", version, trained,
                 _FP32_OF[trained])  # fmt: skip
        return _FP32_OF[trained]
    return trained


_FP32_OF = {"ov-bf16": "ov-fp32", "bf16": "fp32"}
"""The same engine in fp32, for bf16 bundles served where bf16 does not pay off."""


def _load_head(model_dir: Path, info: HeadInfo, *, device: str, batch_size: int) -> BundleHead:
    if info.kind == FINETUNED_KIND:
        resolved = resolve_device(device)
        return FinetunedEncoderHead.load(
            model_dir, info.file, device=resolved, batch_size=batch_size
        )
    return load_head(model_dir, info.file)
