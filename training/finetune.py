"""Fine-tune a transformer encoder end to end on the canonical primary category (GPU users).

    result = finetune_model(snapshot, models_dir=settings.models_dir,
                            base_model="allenai/scibert_scivocab_uncased")
    arxiv-stream train --snapshot F --head finetune --base-model allenai/scibert_scivocab_uncased

The data path is training.train's (read, split, label spaces, staging, reports, metrics.json,
split.json, publish); the model differs: AutoModelForSequenceClassification over the
categories seen in training, trained with the Hugging Face Trainer:
  - one evaluation per epoch on the validation split; training stops after ``patience``
    epochs without a lower validation loss and the best epoch's weights are kept;
  - fp16 mixed precision on CUDA only; nothing is reported anywhere (``report_to=[]``);
  - checkpoints go to a temporary directory that is deleted afterwards (they contain pickles:
    ``training_args.bin``); the bundle gets safetensors and JSON only (models.finetuned).
Domain, group and archive are the marginals of the category probabilities (models.predict),
decoded top-down or flat, whichever was better on validation, as for the embedding heads.
``base_model`` is a hub name (downloaded as usual when online) or a local directory. On a
GPU, ``device="cuda:N"`` is not honoured by the Trainer: choose with CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, ModelFormatError
from core.schemas import Paper
from ingest.snapshot import SnapshotSource
from models.bundle import FINETUNED_KIND, BundleConfig, EncoderInfo, HeadInfo, write_config
from models.classifier import PaperClassifier
from models.device import resolve_device
from models.finetuned import FinetunedEncoderHead, save_finetuned
from training.bundle_writer import label_spaces, run_params, score_splits, summarize
from training.data import PaperData
from training.labels import category_mapping, column
from training.selection import choose_decoding
from training.splits import Split, SplitKind
from training.tracking import track_run
from training.train import (
    TrainingRun,
    TrainResult,
    finish_bundle,
    fresh_stage,
    read_and_split,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "allenai/scibert_scivocab_uncased"
RELOAD_TOLERANCE = 1e-3
"""Largest probability difference allowed between the trained model and its reloaded bundle."""


def finetune_model(
    papers: Iterable[Paper] | SnapshotSource,
    *,
    models_dir: Path,
    base_model: str = DEFAULT_BASE_MODEL,
    now: datetime | None = None,
    seed: int = 0,
    split: SplitKind = "stratified",
    max_samples: int | None = None,
    epochs: int = 4,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    patience: int = 1,
    device: str = "auto",
    max_length: int = 256,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    progress: bool | None = None,
) -> TrainResult:
    """Fine-tune, evaluate and write one model version under ``models_dir``; see module doc.

    ``papers`` as for ``train_model``. ``max_length``: tokens per text, capped by what the
    base model accepts; 256 keeps most texts whole (240 sample papers under a 30k-word
    vocabulary: median 166 tokens, 90th percentile 312).
    """
    run = TrainingRun.start(now, progress)
    settings = _Settings(
        base_model, seed=seed, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, max_length=max_length,
        device=resolve_device(device), show=run.show,
    )  # fmt: skip
    data, parts = read_and_split(
        papers, run, split=split, seed=seed, max_samples=max_samples,
        val_fraction=val_fraction, test_fraction=test_fraction,
    )  # fmt: skip
    texts = [p.text for p in data.papers]
    with run.timed("fit"):
        tuned = _fine_tune(texts, column(data.labels, "category"), parts, settings)
    stage = fresh_stage(models_dir, run.version)
    stage.mkdir(parents=True)
    p_val, decoding, decoding_scores = _write_encoder_bundle(
        stage, run, tuned, settings, data, parts
    )
    metrics, reload_diff = _score(stage, settings, texts, data, parts, p_val)
    metrics["selection"] = {
        "category_head": "finetune",
        "base_model": base_model,
        **tuned.record,
        "reload_max_abs_diff": reload_diff,
        "decoding": decoding,
        "decoding_val": decoding_scores,
    }
    seen = tuned.record["epochs_run"] * tuned.record["train_rows"]
    metrics["timing"] = run.timing() | {
        # over the whole fit: model loading, evaluations and checkpoints included
        "train_texts_per_s": round(seen / run.seconds["fit"], 1),
    }
    result = finish_bundle(stage, models_dir, run.version, metrics, data, parts)
    message = _summary_line(run, metrics, len(data.papers), tuned.record, settings.device)
    log.info("fine-tuned %s", message)
    if run.show:
        print(message, file=sys.stderr)
    params = {
        "head": "finetune",
        "base_model": base_model,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": tuned.max_length,
        "device": settings.device,
    }
    track_run(run_params(run.version, data, parts) | params, metrics, result.path)
    return result


@dataclass(frozen=True)
class _Settings:
    """How to fine-tune: finetune_model's arguments, ``device`` resolved."""

    base_model: str
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    max_length: int
    """Tokens per text asked for (capped by what the base model accepts)."""
    device: str
    show: bool


@dataclass(frozen=True)
class _Tuned:
    """A fine-tuned model and what the bundle needs to say about it."""

    model: Any
    tokenizer: Any
    classes: list[str]
    """The model's outputs in order: the categories of the training rows."""
    max_length: int
    """Tokens per text actually used."""
    record: dict[str, Any]
    """Of the run: epochs, validation losses, rows, settings (metrics.json ``selection``)."""


# --- fine-tuning ------------------------------------------------------------------------------
def _fine_tune(texts: list[str], y: list[str], parts: Split, settings: _Settings) -> _Tuned:
    """Train with the Hugging Face Trainer; the model has the best epoch's weights.

    The classes are the categories of the training rows; validation rows of other
    categories cannot be scored by a loss, so they are left out of early stopping (they
    still count as errors in metrics.json).
    """
    if importlib.util.find_spec("accelerate") is None:  # the Trainer needs it, serving does not
        raise ConfigError("fine-tuning needs accelerate: pip install 'arxiv-stream[finetune]'")
    classes = sorted({y[i] for i in parts.train})
    if len(classes) < 2:
        raise ValueError(f"fine-tuning needs at least 2 categories in training, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    model, tokenizer = _load_base(settings.base_model, classes, settings.seed)
    positions = getattr(model.config, "max_position_embeddings", settings.max_length)
    max_length = min(settings.max_length, int(tokenizer.model_max_length), int(positions))
    train_rows = _encode(tokenizer, texts, y, index, parts.train, max_length)
    val_rows = _encode(tokenizer, texts, y, index, parts.val, max_length)
    if not val_rows:
        raise ValueError("no validation paper has a category seen in training")
    trainer = _train(model, tokenizer, train_rows, val_rows, settings)
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    for entry in evals:
        log.info("epoch %.0f: validation loss %.4f", entry["epoch"], entry["eval_loss"])
    best = min(evals, key=lambda e: e["eval_loss"])
    record = {
        "epochs": settings.epochs,
        "epochs_run": round(trainer.state.epoch or 0),
        "best_epoch": round(best["epoch"]),
        "val_loss": [round(e["eval_loss"], 4) for e in evals],
        "train_rows": len(train_rows),
        "val_rows_for_loss": len(val_rows),
        "max_length": max_length,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "patience": settings.patience,
        "fp16": settings.device.startswith("cuda"),
    }
    return _Tuned(trainer.model, tokenizer, classes, max_length, record)


def _load_base(base_model: str, classes: list[str], seed: int) -> tuple[Any, Any]:
    """(model with a new classification layer over ``classes``, tokenizer) of ``base_model``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)  # the new classification layer is initialised from this
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model,
            num_labels=len(classes),
            id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)},
            ignore_mismatched_sizes=True,  # a base that is itself a classifier: new last layer
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot load base model {base_model!r}: {exc}. Give a local directory, or a hub "
            "name on a machine that can reach the hub"
        ) from exc
    return model, tokenizer


def _encode(
    tokenizer: Any,
    texts: list[str],
    y: list[str],
    index: dict[str, int],
    rows: list[int],
    max_length: int,
) -> list[dict[str, Any]]:
    """The Trainer's examples (token ids + ``labels``) of ``rows`` whose class is in ``index``."""
    keep = [i for i in rows if y[i] in index]
    encoded = tokenizer([texts[i] for i in keep], truncation=True, max_length=max_length)
    return [
        {**{k: v[j] for k, v in encoded.items()}, "labels": index[y[i]]} for j, i in enumerate(keep)
    ]


def _train(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    settings: _Settings,
) -> Any:
    """Run the Trainer, checkpoints in a temporary directory (deleted afterwards: they hold
    pickles); returns it, its ``model`` holding the best epoch's weights."""
    from transformers import (
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
    )

    with tempfile.TemporaryDirectory(prefix="arxiv-stream-finetune-") as scratch:
        trainer = Trainer(
            model=model,
            args=_arguments(scratch, settings),
            train_dataset=train_rows,
            eval_dataset=val_rows,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints each log dict; we log instead
        trainer.train()
    return trainer


def _arguments(scratch: str, settings: _Settings) -> Any:
    """The Trainer's arguments: evaluate and checkpoint every epoch, keep the best one."""
    from transformers import TrainingArguments

    cuda = settings.device.startswith("cuda")
    return TrainingArguments(
        output_dir=scratch,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size * 2,
        learning_rate=settings.learning_rate,
        weight_decay=0.01,
        warmup_steps=0.06,  # a float below 1 is a share of all steps
        eval_strategy="epoch",
        save_strategy="epoch",  # load_best_model_at_end reloads the best checkpoint
        save_only_model=True,  # no optimizer state: we never resume
        save_total_limit=1,  # the Trainer also keeps the best one
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,
        logging_strategy="epoch",
        fp16=cuda,
        use_cpu=settings.device == "cpu",
        dataloader_pin_memory=cuda,
        report_to=[],
        seed=settings.seed,
        data_seed=settings.seed,
        disable_tqdm=not settings.show,
    )


# --- the bundle -------------------------------------------------------------------------------
def _write_encoder_bundle(
    stage: Path,
    run: TrainingRun,
    tuned: _Tuned,
    settings: _Settings,
    data: PaperData,
    parts: Split,
) -> tuple[np.ndarray, dict[str, Any], dict[str, dict[str, float]]]:
    """Save the model and config.json into ``stage``, the decoding chosen on validation with
    the model in memory through the serving code: (validation probabilities, decoding, its
    validation scores)."""
    model, tokenizer, classes = tuned.model, tuned.tokenizer, tuned.classes
    length, device = tuned.max_length, settings.device
    save_finetuned(
        stage,
        "category",
        model,
        tokenizer,
        classes,
        max_length=length,
        base_model=settings.base_model,
    )
    # after saving: the head moves the model to the device (fp16 on CUDA)
    trained = FinetunedEncoderHead(
        model,
        tokenizer,
        classes,
        max_length=length,
        device=device,
        batch_size=settings.batch_size * 2,
    )
    p_val = trained.predict_texts([data.papers[i].text for i in parts.val])
    decoding, decoding_scores = choose_decoding(p_val, classes, [data.labels[i] for i in parts.val])
    summary = summarize(data, parts, run.seconds) | {"device": device, "fine_tuning": tuned.record}
    _write_config(stage, run.version, run.now, settings.base_model, classes, decoding, summary)
    return p_val, decoding, decoding_scores


def _score(
    stage: Path,
    settings: _Settings,
    texts: list[str],
    data: PaperData,
    parts: Split,
    p_val: np.ndarray,
) -> tuple[dict[str, Any], float]:
    """(val and test metrics of the bundle reloaded from ``stage``, the largest difference of
    its validation probabilities from ``p_val``, the trained model's)."""
    classifier = PaperClassifier.load(
        stage, device=settings.device, batch_size=settings.batch_size * 2
    )
    metrics = score_splits(
        stage, classifier, data.labels, parts, lambda rows: [texts[i] for i in rows]
    )
    val_texts = [texts[i] for i in parts.val[:64]]
    return metrics, _reload_difference(classifier, val_texts, p_val[:64])


def _summary_line(
    run: TrainingRun, metrics: dict[str, Any], n: int, record: dict[str, Any], device: str
) -> str:
    return (
        f"{run.version}: {n} papers in {run.seconds['total']:.0f}s (fine-tune "
        f"{run.seconds['fit']:.0f}s, {record['epochs_run']} epochs, "
        f"{metrics['timing']['train_texts_per_s']} texts/s on {device}); test domain acc "
        f"{metrics['test']['domain']['accuracy']:.3f}, category acc "
        f"{metrics['test']['category']['accuracy']:.3f}"
    )


def _write_config(
    stage: Path,
    version: str,
    now: datetime,
    base_model: str,
    classes: list[str],
    decoding: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    config = BundleConfig(
        version=version,
        created_at=now.astimezone(UTC).isoformat(),
        embedder=None,
        heads={"category": HeadInfo(file="category", kind=FINETUNED_KIND, role="category")},
        label_spaces=label_spaces(classes, []),
        category_parents=category_mapping(classes),
        decoding=decoding,
        training=summary,
        encoder=EncoderInfo(name=base_model, model_id=f"{base_model}@finetuned"),
    )
    write_config(stage, config)


def _reload_difference(
    classifier: PaperClassifier, texts: list[str], expected: np.ndarray
) -> float:
    """Max |p| difference between the reloaded bundle and the trained model on ``texts``.

    from_pretrained re-initialises weights it cannot find with a warning only, so a bundle
    that silently lost weights would serve noise; this catches it before publishing.
    """
    if not texts:
        return 0.0
    encoder = classifier.heads["category"]
    if not isinstance(encoder, FinetunedEncoderHead):
        raise ModelFormatError(f"the written bundle's category head is a {encoder.kind!r} head")
    diff = float(np.abs(encoder.predict_texts(texts) - expected).max())
    if diff > RELOAD_TOLERANCE:
        raise ModelFormatError(
            f"the written bundle predicts differently from the trained model (max {diff:.2e})"
        )
    return round(diff, 8)
