"""The model registry: bundle directories under ``settings.models_dir`` (models.registry,
models.bundle) joined with the ``models`` table (db.repository), which says which version
is promoted. Nothing else reads a bundle's files by a version's name or registers one.

Synchronous: each call is one short transaction (db.engine.run_sync), for the command line
and batch jobs. The stream's model holder does its own async lookup through db.repository.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ModelNotFoundError
from core.settings import Settings
from db import repository
from db.engine import run_sync
from db.repository import ModelRow
from models.bundle import read_config
from models.registry import NO_MODEL_HELP, version_dir

if TYPE_CHECKING:
    from models.classifier import PaperClassifier
    from training.train import TrainResult

__all__ = ["NO_MODEL_HELP", "Registry"]

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"


class Registry:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url

    # --- which version ---------------------------------------------------------------

    def promoted_version(self) -> str | None:
        return run_sync(self.database_url, repository.promoted_version)

    def resolve(self, version: str | None) -> str:
        """``version`` if given, else the promoted one; no promoted model says how to make one."""
        if version:
            return version
        found = self.promoted_version()
        if found is None:
            raise ModelNotFoundError(NO_MODEL_HELP)
        return found

    def row(self, version: str) -> ModelRow | None:
        return run_sync(self.database_url, lambda conn: repository.get_model(conn, version))

    def rows(self) -> list[ModelRow]:
        """Every registered version, newest first."""
        return run_sync(self.database_url, repository.list_models)

    def path(self, version: str) -> Path:
        """The bundle directory: the registered ``models.path``, else the version's own
        directory (a bundle trained but not registered yet)."""
        row = self.row(version)
        if row is not None:
            return self.settings.models_dir / row.path
        return version_dir(self.settings.models_dir, version)

    # --- files -----------------------------------------------------------------------

    def load(self, version: str, *, defer_embedder: bool = False) -> PaperClassifier:
        """The bundle of ``version``; ``defer_embedder``: its embedder loads on first use."""
        from models.classifier import PaperClassifier  # torch loads only for this

        return PaperClassifier.load(
            self.path(version),
            device=self.settings.device,
            batch_size=self.settings.embed_batch_size,
            defer_embedder=defer_embedder,
        )

    def trained_ids(self, version: str) -> set[str]:
        """arXiv ids ``version`` learnt from: its split.json's train_ids plus val (used for
        choices). Bundles from before train_ids was recorded know only val and test, so
        nothing beyond them can be excluded (logged)."""
        path = self.path(version) / SPLIT_FILE
        if not path.is_file():
            return set()
        split = json.loads(path.read_text())
        if "train_ids" not in split:
            log.warning(
                "model %s records no train_ids: comparison may include its training", version
            )
        return set(split.get("train_ids", [])) | set(split.get("val_ids", []))

    def describe(self, version: str | None) -> dict[str, Any]:
        """Row, files and config of ``version`` (default: the promoted one)."""
        version = self.resolve(version)
        row = self.row(version)
        if row is None:
            raise ModelNotFoundError(f"no model version {version!r} registered")
        path = self.settings.models_dir / row.path
        config_path = path / "config.json"
        return {
            "version": row.version,
            "promoted": row.promoted,
            "created_at": row.created_at,
            "promoted_at": row.promoted_at,
            "path": str(path),
            "embedder": row.embedder,
            "metrics": row.metrics,
            "decision": row.decision,
            "config": json.loads(config_path.read_text()) if config_path.is_file() else None,
        }

    # --- changes ---------------------------------------------------------------------

    def register(self, result: TrainResult, *, now: datetime, promote: bool) -> None:
        """Add a freshly trained bundle to the ``models`` table (promoting it if asked)."""
        config = read_config(result.path)
        run_sync(
            self.database_url,
            lambda conn: repository.register_model(
                conn,
                version=result.version,
                created_at=now,
                path=result.path.name,
                embedder=config.model_id,
                metrics=result.metrics,
                promote=promote,
            ),
        )

    def promote(
        self, version: str, *, now: datetime, decision: dict[str, Any] | None = None
    ) -> None:
        """Make ``version`` the model every worker uses (at its next batch)."""
        read_config(self.path(version))  # refuses a version whose files are missing or broken
        run_sync(
            self.database_url,
            lambda conn: repository.promote_model(conn, version, now=now, decision=decision),
        )

    def record_decision(self, version: str, decision: dict[str, Any]) -> None:
        run_sync(
            self.database_url, lambda conn: repository.record_decision(conn, version, decision)
        )
