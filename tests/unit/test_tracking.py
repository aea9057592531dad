"""Optional MLflow tracking (training.tracking): off without MLFLOW_TRACKING_URI, a warning
without mlflow, never a failed training; and a real run in a local SQLite store after
train_model on 150 real papers of 6 domains (hashed word counts, not a model): 3-12 s."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from core.schemas import Paper
from core.taxonomy import domain_of
from ingest.snapshot import read_snapshot
from training.labels import labels_of
from training.tracking import INSTALL_HINT, flatten_metrics, track_run
from training.train import train_model

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


def primary(paper: Paper) -> str | None:
    labels = labels_of(paper)
    return labels.category if labels and paper.abstract else None


class HashingEmbedder:
    """Stands in for the embedding model: hashed word counts as unit rows (fast, fixed)."""

    name = "test/hashing"
    model_id = "test/hashing@fp32"
    variant = "fp32"
    dim = 256
    max_seq_length = 512
    device = "cpu"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectorizer = HashingVectorizer(n_features=self.dim, alternate_sign=False, norm="l2")
        return vectorizer.transform(list(texts)).toarray().astype(np.float32)


def test_nothing_happens_without_a_tracking_uri(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # importing it would now fail loudly
    with caplog.at_level(logging.DEBUG, logger="training.tracking"):
        assert track_run({"head": "logreg"}, {"test": {"n": 3}}, tmp_path) is None
    assert not caplog.records


def test_missing_mlflow_warns_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with caplog.at_level(logging.WARNING, logger="training.tracking"):
        assert track_run({"head": "logreg"}, {"test": {"n": 3}}, tmp_path) is None
    assert INSTALL_HINT in caplog.text and INSTALL_HINT == "pip install 'arxiv-stream[mlflow]'"


def test_a_tracking_failure_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with caplog.at_level(logging.WARNING, logger="training.tracking"):
        assert track_run({"head": "logreg"}, {"test": {"n": 3}}, tmp_path) is None
    assert "tracking at nosuchscheme://nowhere failed" in caplog.text


def test_metrics_are_flattened_to_dotted_numbers() -> None:
    metrics = {
        "version": "m20261121-230501-3fa2",
        "test": {"n": 80, "domain": {"accuracy": 0.9, "unseen": 0}, "categories": None},
        "selection": {"category_head": "logreg C=0.1", "tried": {"logreg C=0.1": 0.5}},
        "timing": {"fit_s": 1.5, "embed_texts_per_s": None, "cached": True},
    }
    assert flatten_metrics(metrics) == {
        "test.n": 80.0,
        "test.domain.accuracy": 0.9,
        "test.domain.unseen": 0.0,
        "selection.tried.logreg C_0.1": 0.5,  # "=" is not allowed in an MLflow name
        "timing.fit_s": 1.5,
    }


def test_train_model_logs_a_run(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    papers = list(read_snapshot(shared_data / SAMPLE, max_samples=3000))
    counts = Counter(c for p in papers if (c := primary(p)) is not None)
    per_domain: dict[str, str] = {}  # the most common category of each domain
    for category, _ in counts.most_common():
        per_domain.setdefault(domain_of(category), category)
    chosen = set(list(per_domain.values())[:6])
    papers = [p for p in papers if primary(p) in chosen][:150]
    result = train_model(
        papers,
        models_dir=tmp_path / "models",
        head="logreg",
        seed=1,
        embedder=HashingEmbedder(),  # type: ignore[arg-type]
        now=datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC),
        progress=False,
    )

    client = MlflowClient(uri)
    (run,) = client.search_runs(experiment_ids=["0"])
    assert run.info.run_name == result.version and run.info.status == "FINISHED"
    params = run.data.params
    assert params["version"] == result.version and params["head"] == "logreg"
    assert params["seed"] == "1" and params["split"] == "stratified"
    assert params["papers"] == "150" and params["embedder"] == "test/hashing@fp32"
    metrics = run.data.metrics
    assert metrics["test.domain.accuracy"] == result.metrics["test"]["domain"]["accuracy"]
    assert (
        metrics["val.category.top5_accuracy"] == result.metrics["val"]["category"]["top5_accuracy"]
    )
    assert "timing.total_s" in metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "bundle")}
    assert {"bundle/config.json", "bundle/metrics.json", "bundle/category.safetensors"} <= artifacts
