"""Hyperparameter search for the category head (``train --tune N``), with Optuna.

    best, record = tune_softmax_head(X, y, parts, trials=20, seed=13)

Each trial fits a ``SoftmaxHead`` on the training rows of cached embeddings and is scored by
validation category accuracy, so a trial costs only fitting (seconds to a few minutes at
300k papers), never embedding. The test split is not touched. The search space covers the
architecture (linear or one hidden layer of 256-2048), dropout, learning rate, weight decay
and batch size; Optuna's TPE sampler is seeded, so the same data and seed give the same
trials. With ``MLFLOW_TRACKING_URI`` set each trial is one nested MLflow run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

import numpy as np

from models.heads import FitSettings, SoftmaxHead
from training.evaluate import argmax_accuracy
from training.splits import Split

log = logging.getLogger(__name__)


def suggest_settings(trial: Any, seed: int) -> FitSettings:
    """One point of the search space (an ``optuna.Trial`` or anything with its suggest_*)."""
    hidden = trial.suggest_categorical("hidden", [0, 256, 512, 1024, 2048])
    dropout = trial.suggest_float("dropout", 0.0, 0.6) if hidden else 0.0
    return FitSettings(
        hidden=hidden,
        dropout=dropout,
        lr=trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", [256, 512, 1024]),
        max_epochs=40,
        patience=3,
        seed=seed,
    )


def tune_softmax_head(
    X: np.ndarray, y: list[str], parts: Split, *, trials: int, seed: int
) -> tuple[FitSettings, dict[str, Any]]:
    """(best settings, record for the bundle: every trial's params and validation accuracy)."""
    import optuna

    if trials < 1:
        raise ValueError(f"--tune needs at least 1 trial, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tr, va = parts.train, parts.val
    y_tr, y_va = [y[i] for i in tr], [y[i] for i in va]
    tracker = _TrialTracker()

    def objective(trial: Any) -> float:
        settings = suggest_settings(trial, seed)
        head = SoftmaxHead(settings).fit(X[tr], y_tr, X_val=X[va], y_val=y_va)
        accuracy = argmax_accuracy(head.classes, head.predict_proba(X[va]), y_va)
        trial.set_user_attr("epochs_trained", head.epochs_trained)
        log.info("trial %d: %s -> validation accuracy %.4f", trial.number, trial.params, accuracy)
        tracker.log(trial.number, trial.params, accuracy)
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    try:
        study.optimize(objective, n_trials=trials)
    finally:
        tracker.close()
    best = suggest_settings(optuna.trial.FixedTrial(study.best_params), seed)
    record = {
        "trials": trials,
        "best_params": study.best_params,
        "best_val_category_accuracy": round(study.best_value, 4),
        "best_settings": asdict(best),
        "history": [
            {"number": t.number, "params": t.params, "value": round(t.value or 0.0, 4)}
            for t in study.trials
        ],
    }
    return best, record


class _TrialTracker:
    """One MLflow run per trial (nested under a parent) when MLFLOW_TRACKING_URI is set.
    Tracking never fails the search (same rule as training.tracking)."""

    def __init__(self) -> None:
        self._mlflow: Any = None
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            return
        try:
            import mlflow

            mlflow.set_tracking_uri(uri)
            mlflow.start_run(run_name="tune")
            self._mlflow = mlflow
        except Exception as exc:  # missing package, unreachable server
            log.warning("MLflow tracking of the search at %s is off: %s", uri, exc)

    def log(self, number: int, params: dict[str, Any], accuracy: float) -> None:
        if self._mlflow is None:
            return
        try:
            with self._mlflow.start_run(run_name=f"trial-{number}", nested=True):
                self._mlflow.log_params(params)
                self._mlflow.log_metric("val_category_accuracy", accuracy)
        except Exception as exc:
            log.warning("MLflow: trial %d not tracked: %s", number, exc)

    def close(self) -> None:
        if self._mlflow is not None:
            try:
                self._mlflow.end_run()
            except Exception as exc:
                log.warning("MLflow: could not close the search run: %s", exc)
