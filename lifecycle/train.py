"""Train one model version and register it: the ``train`` use case.

``TrainOptions`` holds every training choice with its default, written once here; the
command line builds one from its flags (and takes its defaults from ``DEFAULTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from core.errors import ConfigError
from core.schemas import Paper
from core.settings import Settings
from lifecycle.registry import Registry
from models.variants import Variant
from training.splits import SplitKind

if TYPE_CHECKING:
    from training.train import TrainResult

TrainerHead = Literal["auto", "logreg", "mlp", "logreg-knn", "softmax", "finetune"]
"""Heads over sentence embeddings, or ``finetune``: a transformer trained end to end."""
TRAINER_HEADS: tuple[str, ...] = get_args(TrainerHead)

Papers = Path | list[Path] | list[Paper]
"""Snapshot file(s)/directories (read with ingest.snapshot) or papers already in memory."""


@dataclass(frozen=True)
class TrainOptions:
    head: TrainerHead = "auto"
    base_model: str | None = None
    """With ``head="finetune"``: hub name or local directory (None: the trainer's default,
    allenai/scibert_scivocab_uncased)."""
    epochs: int | None = None
    """With ``head="finetune"``: at most this many (None: the trainer's default, 4)."""
    max_samples: int | None = None
    """Read at most this many papers (None: all)."""
    split: SplitKind = "stratified"
    seed: int = 13
    """Seeds the split and every head, so a run can be repeated."""
    variant: Variant = "auto"
    """Embedder variant (models.variants); ``auto`` picks from what the CPU supports."""
    tune: int = 0
    """Optuna trials over the softmax head before the final fit (0: none)."""
    text_head: bool = True
    """Also fit the TF-IDF text head (used where validation says it helps)."""
    exclude_holdout: bool = False
    """Never train on the fixed evaluation holdout (training.holdout)."""
    warm_from: Path | None = None
    """An earlier bundle whose choices and weights to refit from (training.warm); retrain
    sets it to the incumbent's unless asked for a cold run."""

    def check(self) -> None:
        if self.head != "finetune" and (self.base_model or self.epochs):
            raise ConfigError("--base-model and --epochs go with --head finetune")


DEFAULTS = TrainOptions()


def train(
    settings: Settings, papers: Papers, options: TrainOptions, *, now: datetime
) -> TrainResult:
    """Train and write one bundle under ``settings.models_dir`` (not registered)."""
    options.check()
    if options.head == "finetune":
        from training.finetune import DEFAULT_BASE_MODEL, finetune_model

        # the trainer's own epoch default unless asked (None is not an epoch count)
        epochs: dict[str, Any] = {"epochs": options.epochs} if options.epochs else {}
        return finetune_model(
            papers,
            models_dir=settings.models_dir,
            base_model=options.base_model or DEFAULT_BASE_MODEL,
            **epochs,
            seed=options.seed,
            split=options.split,
            max_samples=options.max_samples,
            device=settings.device,
            now=now,
        )
    from training.train import train_model  # torch loads only for this

    return train_model(
        papers,
        models_dir=settings.models_dir,
        embedder_name=settings.embedder_model,
        head=options.head,
        variant=options.variant,
        cache_dir=settings.embedding_cache_dir,
        text_head=options.text_head,
        tune=options.tune,
        exclude_holdout=options.exclude_holdout,
        warm_from=options.warm_from,
        seed=options.seed,
        split=options.split,
        max_samples=options.max_samples,
        device=settings.device,
        now=now,
    )


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    promoted: bool


def train_and_register(
    settings: Settings,
    registry: Registry,
    papers: Papers,
    options: TrainOptions = DEFAULTS,
    *,
    now: datetime,
    force_promote: bool = False,
) -> Trained:
    """Train, register; promote when asked or when no model is promoted yet (so a fresh
    system can start labelling at once)."""
    result = train(settings, papers, options, now=now)
    promote = force_promote or registry.promoted_version() is None
    registry.register(result, now=now, promote=promote)
    return Trained(result, promote)
