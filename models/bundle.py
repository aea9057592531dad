"""A model version on disk: a directory that describes itself (no pickle, no training code).

    <models_dir>/m20261121-230501-3fa2/
        config.json                   BundleConfig below (format, embedder, heads, labels, ...)
        category.json / .safetensors  category head (primary): config + weights
        domain.json / .safetensors    direct domain head (reported; used if config says so)
        categories.json / .safetensors  multi-label head with per-label thresholds
        (or, for a fine-tuned encoder: category.json + category/ holding the Hugging Face
        model and tokenizer as save_pretrained writes them; see models.finetuned)
        metrics.json                  validation and test metrics (training.evaluate schema)
        report.json                   per-class precision/recall/F1 on the test split
        split.json                    split summary and the val/test arXiv ids
        confusion_domain.png, confusion_archive.png
Only config.json and the heads are needed to serve; the rest documents the training run.

``config.json`` fields: see ``BundleConfig``. ``read_config`` validates it and raises
ModelNotFoundError / ModelFormatError saying how to make a usable one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ModelFormatError, ModelNotFoundError

BUNDLE_FORMAT = "arxiv-stream.model/1"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TEXT_RECIPE = "title. abstract"
FINETUNED_KIND = "finetuned-encoder"
"""Head kind of a transformer fine-tuned end to end (models.finetuned)."""
HOW_TO_MAKE = (
    "train one with `arxiv-stream train` (training.train.train_model) from a Kaggle-format "
    "snapshot, e.g. ../shared/data/arxiv-sample/arxiv-metadata-sample.jsonl.gz"
)


@dataclass
class EmbedderInfo:
    name: str
    """sentence-transformers name or path (MiniLM aliases collapse to the hub id)."""
    model_id: str
    """``name@variant``: features come from exactly this; serve with the same variant."""
    dim: int
    variant: str
    """fp32 | bf16 | fp16: the weight precision the embeddings were computed with."""
    max_seq_length: int


@dataclass
class EncoderInfo:
    """A transformer fine-tuned end to end (head kind ``finetuned-encoder``) instead of an
    embedder: it turns text into category probabilities itself."""

    name: str
    """Hub name or path it was fine-tuned from (provenance; the weights are in the bundle)."""
    model_id: str
    """``name@finetuned``: what the ``models`` table records (not an embedding-cache key)."""


@dataclass
class HeadInfo:
    file: str
    """Stem of ``<file>.json`` + ``<file>.safetensors`` in the bundle directory (a fine-tuned
    encoder: ``<file>.json`` + the directory ``<file>/``)."""
    kind: str
    """logreg | mlp | multilabel-logreg (models.heads) | finetuned-encoder (models.finetuned)."""
    role: str
    """category | domain | categories."""


@dataclass
class BundleConfig:
    version: str
    created_at: str
    """ISO-8601 UTC."""
    embedder: EmbedderInfo | None
    """None for a fine-tuned encoder bundle (``encoder`` says what reads the text)."""
    heads: dict[str, HeadInfo]
    """By role; ``category`` is required."""
    label_spaces: dict[str, list[str]]
    """domain, group, archive, category (classes of the category head), categories."""
    category_parents: dict[str, dict[str, str]]
    """category -> {domain, group, archive} as used to marginalise and decode."""
    decoding: dict[str, Any]
    """mode (top_down | flat), domain_source (marginal | head), why (see models.predict)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Data summary: source, counts per split, seed, split kind, label counts, timings."""
    text_recipe: str = TEXT_RECIPE
    format: str = BUNDLE_FORMAT
    encoder: EncoderInfo | None = None
    """Set (and ``embedder`` None) when the category head is a fine-tuned encoder."""

    @property
    def model_id(self) -> str:
        """What turns text into features: the embedder's or the fine-tuned encoder's id."""
        info = self.embedder or self.encoder
        assert info is not None  # read_config guarantees one of them
        return info.model_id

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleConfig:
        data = dict(data)
        data["embedder"] = EmbedderInfo(**data["embedder"]) if data.get("embedder") else None
        if data.get("encoder"):
            data["encoder"] = EncoderInfo(**data["encoder"])
        data["heads"] = {role: HeadInfo(**info) for role, info in data["heads"].items()}
        return cls(**data)


def write_config(directory: Path, config: BundleConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(config.to_json())


def read_config(directory: Path) -> BundleConfig:
    """Parse and check ``config.json``; every head it names must have both files."""
    path = directory / CONFIG_FILE
    if not directory.is_dir() or not path.is_file():
        raise ModelNotFoundError(f"no model at {directory} (missing {CONFIG_FILE}); {HOW_TO_MAKE}")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != BUNDLE_FORMAT:
            raise ModelFormatError(
                f"{path}: format {data.get('format')!r}, this code reads {BUNDLE_FORMAT!r}; "
                f"{HOW_TO_MAKE}"
            )
        config = BundleConfig.from_dict(data)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ModelFormatError(
            f"{path} is not a valid model config ({exc}); {HOW_TO_MAKE}"
        ) from exc
    if "category" not in config.heads:
        raise ModelFormatError(f"{path}: no category head; {HOW_TO_MAKE}")
    if (config.embedder is None) == (config.encoder is None):
        raise ModelFormatError(f"{path}: needs exactly one of embedder and encoder; {HOW_TO_MAKE}")
    for info in config.heads.values():
        for name in head_files(info):
            if not (directory / name).is_file():
                raise ModelFormatError(
                    f"{directory}: head {info.role!r} lacks {name}; {HOW_TO_MAKE}"
                )
    return config


def head_files(info: HeadInfo) -> list[str]:
    """Files (relative to the bundle) a head cannot be loaded without."""
    if info.kind == FINETUNED_KIND:
        # save_pretrained shards only above 50 GB, so one model.safetensors is the norm
        return [f"{info.file}.json", f"{info.file}/config.json", f"{info.file}/model.safetensors"]
    return [f"{info.file}.json", f"{info.file}.safetensors"]


def write_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=1, ensure_ascii=False))


def read_metrics(directory: Path) -> dict[str, Any]:
    """A bundle's metrics.json; {} when it is missing or unreadable (the metrics describe a
    bundle, none of its files needs them to serve)."""
    try:
        data = json.loads((directory / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
