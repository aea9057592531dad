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
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
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
from models.registry import new_version_id, staging_dir
from training.bundle_writer import label_spaces, run_params, score_splits, summarize
from training.data import read_papers, split_papers
from training.labels import category_mapping, column
from training.selection import choose_decoding
from training.splits import Split, SplitKind
from training.tracking import track_run
from training.train import TrainResult, finish_bundle

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
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    show = sys.stderr.isatty() if progress is None else progress
    version = new_version_id(now)
    resolved = resolve_device(device)
    seconds: dict[str, float] = {}

    data = read_papers(papers, max_samples=max_samples, show=show)
    seconds["read"] = time.perf_counter() - started
    parts = split_papers(
        data, split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    texts = [p.text for p in data.papers]
    y = column(data.labels, "category")

    t0 = time.perf_counter()
    model, tokenizer, record = _fine_tune(
        texts,
        y,
        parts,
        base_model=base_model,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        max_length=max_length,
        device=resolved,
        show=show,
    )
    seconds["fit"] = time.perf_counter() - t0
    classes: list[str] = record.pop("classes")

    stage = staging_dir(models_dir, version)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    length = record["max_length"]
    save_finetuned(
        stage, "category", model, tokenizer, classes, max_length=length, base_model=base_model
    )
    # the model in memory, through the serving code, decides the decoding on validation
    trained = FinetunedEncoderHead(
        model, tokenizer, classes, max_length=length, device=resolved, batch_size=batch_size * 2
    )
    val_texts = [texts[i] for i in parts.val]
    p_val = trained.predict_texts(val_texts)
    decoding, decoding_scores = choose_decoding(p_val, classes, [data.labels[i] for i in parts.val])
    summary = summarize(data, parts, seconds) | {"device": resolved, "fine_tuning": record}
    _write_config(stage, version, now, base_model, classes, decoding, summary)

    classifier = PaperClassifier.load(stage, device=resolved, batch_size=batch_size * 2)
    metrics = score_splits(
        stage, classifier, data.labels, parts, lambda rows: [texts[i] for i in rows]
    )
    reload_diff = _reload_difference(classifier, val_texts[:64], p_val[:64])
    metrics["selection"] = {
        "category_head": "finetune",
        "base_model": base_model,
        **record,
        "reload_max_abs_diff": reload_diff,
        "decoding": decoding,
        "decoding_val": decoding_scores,
    }
    seconds["total"] = time.perf_counter() - started
    seen = record["epochs_run"] * record["train_rows"]
    metrics["timing"] = {f"{k}_s": round(v, 2) for k, v in seconds.items()} | {
        # over the whole fit: model loading, evaluations and checkpoints included
        "train_texts_per_s": round(seen / seconds["fit"], 1),
    }
    result = finish_bundle(stage, models_dir, version, metrics, data, parts)
    message = (
        f"{version}: {len(data.papers)} papers in {seconds['total']:.0f}s (fine-tune "
        f"{seconds['fit']:.0f}s, {record['epochs_run']} epochs, "
        f"{metrics['timing']['train_texts_per_s']} texts/s on {resolved}); test domain acc "
        f"{metrics['test']['domain']['accuracy']:.3f}, category acc "
        f"{metrics['test']['category']['accuracy']:.3f}"
    )
    log.info("fine-tuned %s", message)
    if show:
        print(message, file=sys.stderr)
    params = {
        "head": "finetune",
        "base_model": base_model,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": length,
        "device": resolved,
    }
    track_run(run_params(version, data, parts) | params, metrics, result.path)
    return result


def _fine_tune(
    texts: list[str],
    y: list[str],
    parts: Split,
    *,
    base_model: str,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    max_length: int,
    device: str,
    show: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train with the Hugging Face Trainer: (best model, tokenizer, record of the run, whose
    ``classes`` are the model's outputs in order).

    The classes are the categories of the training rows; validation rows of other
    categories cannot be scored by a loss, so they are left out of early stopping (they
    still count as errors in metrics.json).
    """
    if importlib.util.find_spec("accelerate") is None:  # the Trainer needs it, serving does not
        raise ConfigError("fine-tuning needs accelerate: pip install 'arxiv-stream[finetune]'")
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    classes = sorted({y[i] for i in parts.train})
    if len(classes) < 2:
        raise ValueError(f"fine-tuning needs at least 2 categories in training, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    set_seed(seed)  # the new classification layer is initialised from this
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model,
            num_labels=len(classes),
            id2label=dict(enumerate(classes)),
            label2id=index,
            ignore_mismatched_sizes=True,  # a base that is itself a classifier: new last layer
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot load base model {base_model!r}: {exc}. Give a local directory, or a hub "
            "name on a machine that can reach the hub"
        ) from exc
    positions = getattr(model.config, "max_position_embeddings", max_length)
    max_length = min(max_length, int(tokenizer.model_max_length), int(positions))

    def rows(indices: list[int]) -> list[dict[str, Any]]:
        keep = [i for i in indices if y[i] in index]
        encoded = tokenizer([texts[i] for i in keep], truncation=True, max_length=max_length)
        return [
            {**{k: v[j] for k, v in encoded.items()}, "labels": index[y[i]]}
            for j, i in enumerate(keep)
        ]

    train_rows, val_rows = rows(parts.train), rows(parts.val)
    if not val_rows:
        raise ValueError("no validation paper has a category seen in training")
    cuda = device.startswith("cuda")
    with tempfile.TemporaryDirectory(prefix="arxiv-stream-finetune-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size * 2,
            learning_rate=learning_rate,
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
            use_cpu=device == "cpu",
            dataloader_pin_memory=cuda,
            report_to=[],
            seed=seed,
            data_seed=seed,
            disable_tqdm=not show,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            eval_dataset=val_rows,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints each log dict; we log below
        trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    for entry in evals:
        log.info("epoch %.0f: validation loss %.4f", entry["epoch"], entry["eval_loss"])
    best = min(evals, key=lambda e: e["eval_loss"])
    record = {
        "classes": classes,
        "epochs": epochs,
        "epochs_run": round(trainer.state.epoch or 0),
        "best_epoch": round(best["epoch"]),
        "val_loss": [round(e["eval_loss"], 4) for e in evals],
        "train_rows": len(train_rows),
        "val_rows_for_loss": len(val_rows),
        "max_length": max_length,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "patience": patience,
        "fp16": cuda,
    }
    return trainer.model, tokenizer, record


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
    diff = float(np.abs(classifier.heads["category"].predict_texts(texts) - expected).max())
    if diff > RELOAD_TOLERANCE:
        raise ModelFormatError(
            f"the written bundle predicts differently from the trained model (max {diff:.2e})"
        )
    return round(diff, 8)
