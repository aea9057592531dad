"""Shared pieces of the heads: the file format (``<name>.json`` + ``<name>.safetensors``:
``write_head`` / ``read_head``), the input ``Standardizer``, label encoding, softmax/sigmoid.
The protocols the heads satisfy are in models.heads.base."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from core.errors import ModelFormatError

HEAD_FORMAT = "arxiv-stream.head/1"


# --- shared pieces ----------------------------------------------------------------------
class Standardizer:
    """x -> (x - mean) / std, fitted on training rows."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32 (n, k)."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    out: np.ndarray = z.astype(np.float32)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, float32 (logits clipped to +-50)."""
    out: np.ndarray = (1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))).astype(np.float32)
    return out


def encode_labels(y: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(sorted distinct labels, int64 (n,) code of each row); at least 2 labels."""
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ValueError(f"a head needs at least 2 classes, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.fromiter((index[label] for label in y), dtype=np.int64, count=len(y))


def known_rows(classes: Sequence[str], labels: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """(positions of ``labels`` that are among ``classes``, their class codes): validation
    rows a head can be scored on (a class absent from training has no output)."""
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, label in enumerate(labels) if label in index]
    return keep, np.array([index[labels[i]] for i in keep], dtype=np.int64)


def write_head(directory: Path, name: str, config: dict[str, Any], arrays: dict[str, Any]) -> None:
    """``<name>.json`` (``config`` with our format tag) and ``<name>.safetensors`` (``arrays``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": HEAD_FORMAT, **config}
    (directory / f"{name}.json").write_text(json.dumps(config, indent=1, ensure_ascii=False))
    # save() + write_bytes, not save_file(): the file gets the umask's mode (save_file
    # writes 0600, which a worker running as another user could not read)
    weights = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    (directory / f"{name}.safetensors").write_bytes(weights)


def read_head_config(config_path: Path, kind: str) -> dict[str, Any]:
    """A head's JSON config, refused unless it is of our format and the expected kind."""
    config: dict[str, Any] = json.loads(config_path.read_text())
    if config.get("format") != HEAD_FORMAT or config.get("kind") != kind:
        raise ModelFormatError(
            f"{config_path}: expected a {kind!r} head in format {HEAD_FORMAT}, "
            f"found kind={config.get('kind')!r} format={config.get('format')!r}"
        )
    return config


def read_head(
    directory: Path, name: str, kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, arrays) of the ``kind`` head saved as ``name`` in ``directory`` (``write_head``)."""
    config_path, weights_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelFormatError(
            f"head {name!r} incomplete in {directory}: need {name}.json and .safetensors"
        )
    config = read_head_config(config_path, kind)
    return config, load_file(weights_path)


def check_rows(name: str, rows: int, classes: list[str]) -> None:
    """Refuse a loaded head whose weights have ``rows`` outputs for ``len(classes)`` classes."""
    if rows != len(classes):
        raise ModelFormatError(f"head {name!r}: {rows} weight rows but {len(classes)} classes")
