"""A model version on disk: a directory that describes itself (no pickle, no training code).

    <models_dir>/m20261121-230501-3fa2/
        config.json                   BundleConfig below (format, embedder, heads, labels, ...)
        category.json / .safetensors  category head (primary): config + weights
        domain.json / .safetensors    direct domain head (reported; used if config says so)
        categories.json / .safetensors  multi-label head with per-label thresholds
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
class HeadInfo:
    file: str
    """Stem of ``<file>.json`` + ``<file>.safetensors`` in the bundle directory."""
    kind: str
    """logreg | mlp | multilabel-logreg (models.heads)."""
    role: str
    """category | domain | categories."""


@dataclass
class BundleConfig:
    version: str
    created_at: str
    """ISO-8601 UTC."""
    embedder: EmbedderInfo
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleConfig:
        data = dict(data)
        data["embedder"] = EmbedderInfo(**data["embedder"])
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
    for info in config.heads.values():
        for suffix in (".json", ".safetensors"):
            if not (directory / f"{info.file}{suffix}").is_file():
                raise ModelFormatError(
                    f"{directory}: head {info.role!r} lacks {info.file}{suffix}; {HOW_TO_MAKE}"
                )
    return config


def write_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=1, ensure_ascii=False))


def read_metrics(directory: Path) -> dict[str, Any]:
    path = directory / METRICS_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no {METRICS_FILE} in {directory}")
    result: dict[str, Any] = json.loads(path.read_text())
    return result
