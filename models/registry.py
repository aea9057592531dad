"""Filesystem side of the model registry: one directory per model version.

    <models_dir>/
        m20261121-230501-3fa2/      a complete bundle (config.json, *.safetensors, metrics.json)
        .tmp-m20261121-231744-9c01/ a bundle being written (renamed into place when done)

Version ids sort by creation time. Which version is promoted is recorded in the database;
``lifecycle.registry`` is the one place that joins the two.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ModelNotFoundError
from models.bundle import CONFIG_FILE

if TYPE_CHECKING:
    from models.classifier import PaperClassifier

VERSION_RE = re.compile(r"^m\d{8}-\d{6}-[0-9a-f]{4}$")

NO_MODEL_HELP = (
    "no promoted model in the registry. Train one first:\n"
    "  arxiv-stream train --snapshot ../shared/data/arxiv-sample/arxiv-metadata-sample.jsonl.gz\n"
    "(or `arxiv-stream up --snapshot FILE`, which trains one when none exists)"
)
"""What every process says when no model is promoted."""


def new_version_id(now: datetime) -> str:
    """``m20261121-230501-3fa2``: UTC time of ``now`` (must be timezone-aware) + 4 hex."""
    if now.tzinfo is None:
        raise ValueError("new_version_id needs a timezone-aware datetime")
    return f"m{now.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def is_version_id(version: str) -> bool:
    return VERSION_RE.match(version) is not None


def version_dir(models_dir: Path, version: str) -> Path:
    """Where ``version`` lives; rejects anything that is not a version id (no paths)."""
    if not is_version_id(version):
        raise ModelNotFoundError(
            f"{version!r} is not a model version id (expected e.g. m20261121-230501-3fa2)"
        )
    return models_dir / version


def staging_dir(models_dir: Path, version: str) -> Path:
    """Where a bundle is written before ``publish`` renames it to ``version_dir``."""
    return version_dir(models_dir, version).with_name(f".tmp-{version}")


def publish(models_dir: Path, version: str) -> Path:
    """Atomically move a finished staging directory into place; returns the final path."""
    final = version_dir(models_dir, version)
    staging_dir(models_dir, version).rename(final)
    return final


def list_versions(models_dir: Path) -> list[str]:
    """Complete bundles (a version-id directory with config.json), oldest first."""
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if is_version_id(p.name) and (p / CONFIG_FILE).is_file()
    )


def load_version(
    models_dir: Path,
    version: str,
    *,
    device: str,
    batch_size: int | None,
    num_threads: int | None = None,
) -> PaperClassifier:
    """The bundle of ``version`` under ``models_dir``, ready to serve: what the worker and
    the API load when the database names a promoted version."""
    from models.classifier import PaperClassifier  # torch loads only here

    return PaperClassifier.load(
        version_dir(models_dir, version),
        device=device,
        batch_size=batch_size,
        num_threads=num_threads,
    )
