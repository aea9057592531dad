"""Fine-tuning (training.finetune) on 200 real papers with a tiny randomly initialised BERT
built here (a WordPiece vocabulary of the papers' most frequent words): nothing is downloaded.
About 20 s on 2 CPU cores; the model is too small to classify well, so the tests check the
machinery (bundle, reload, decoding, metrics, early stopping), not accuracy."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from transformers import BertConfig, BertModel, BertTokenizer

from cli.cmd_models import train_options
from cli.main import build_parser
from core.errors import ConfigError, ModelFormatError
from core.schemas import Paper
from core.settings import Settings
from core.taxonomy import archive_of, domain_of, group_of
from ingest.snapshot import read_snapshot
from lifecycle.train import train
from models.bundle import read_config
from models.classifier import PaperClassifier
from training.evaluate import evaluate
from training.finetune import finetune_model
from training.train import TrainResult

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"
SPACE_KEYS = {"n", "accuracy", "macro_f1", "weighted_f1", "top5_accuracy", "unseen"}
WHEN = datetime(2026, 11, 22, 9, 30, 0, tzinfo=UTC)
PICKLE, ZIP = b"\x80", b"PK\x03\x04"  # pickle protocol 2+, and torch.save's zip of pickles


def tiny_bert(directory: Path, texts: list[str]) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) and a 1000-word WordPiece tokenizer."""
    words = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w, _ in words.most_common(995)]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def papers(shared_data: Path) -> list[Paper]:
    everything = list(read_snapshot(shared_data / SAMPLE))
    return everything[::20][:200]  # spread over the sample's sources and archives


@pytest.fixture(scope="module")
def base_model(papers: list[Paper], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), [p.text for p in papers])


@pytest.fixture(scope="module")
def trained(
    papers: list[Paper], base_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, Path]:
    """One fine-tuning run; also returns the temp dir it used (checkpoints went there)."""
    scratch = tmp_path_factory.mktemp("scratch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))
        result = finetune_model(
            papers,
            models_dir=tmp_path_factory.mktemp("models"),
            base_model=str(base_model),
            now=WHEN,
            seed=3,
            epochs=2,
            batch_size=16,
            learning_rate=1e-3,  # a random tiny model needs a big step to learn anything
            max_length=96,
            device="cpu",
            progress=False,
        )
    return result, scratch


def test_bundle_is_self_describing_and_holds_no_pickle(trained: tuple[TrainResult, Path]) -> None:
    result, scratch = trained
    names = {str(p.relative_to(result.path)) for p in result.path.rglob("*") if p.is_file()}
    assert {
        "config.json",
        "metrics.json",
        "report.json",
        "split.json",
        "category.json",
        "category/config.json",
        "category/model.safetensors",
        "category/tokenizer.json",
    } <= names, names
    for name in names:
        assert Path(name).suffix in {".json", ".safetensors", ".png", ".txt"}, name
        head = (result.path / name).read_bytes()[:4]
        assert not head.startswith(PICKLE) and head != ZIP, f"{name} looks like a pickle"
    modes = {p.stat().st_mode & 0o777 for p in result.path.rglob("*") if p.is_file()}
    assert len(modes) == 1, modes  # safetensors' 0600 was widened like every other file
    assert not list(scratch.iterdir()), "Trainer checkpoints were left behind"

    config = read_config(result.path)
    assert config.embedder is None and config.encoder is not None
    assert config.heads["category"].kind == "finetuned-encoder"
    assert config.model_id.endswith("@finetuned")
    assert config.label_spaces["categories"] == []
    model_config = json.loads((result.path / "category/config.json").read_text())
    assert list(model_config["id2label"].values()) == config.label_spaces["category"]


def test_reloaded_bundle_predicts_consistently(
    trained: tuple[TrainResult, Path], papers: list[Paper]
) -> None:
    result, _ = trained
    classifier = PaperClassifier.load(result.path, device="cpu")
    assert classifier.reads_text and classifier.embedder is None
    assert classifier.version == result.version
    texts = [p.text for p in papers[:40]]
    predictions = classifier.predict_texts(texts, top_k=5)
    assert len(predictions) == len(texts)
    flat = classifier.config.decoding["mode"] == "flat"
    for p in predictions:
        category = p.category.label
        assert (p.domain.label, p.group.label, p.archive.label) == (
            domain_of(category),
            group_of(category),
            archive_of(category),
        )
        scores = [s.score for s in p.category_top_k]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in [*scores, p.domain.score, p.category.score])
        assert sum(scores) <= 1.0 + 1e-5 and p.categories == []
        if flat:
            assert category == p.category_top_k[0].label
    with pytest.raises(RuntimeError, match="score_texts"):
        classifier.score_embeddings(np.zeros((1, 32), dtype=np.float32))

    # the same probabilities however the texts are batched (length-sorted, padded) ...
    one_by_one = PaperClassifier.load(result.path, device="cpu", batch_size=1)
    np.testing.assert_allclose(
        one_by_one.score_texts(texts).spaces["category"].probs,
        classifier.score_texts(texts).spaces["category"].probs,
        atol=1e-5,
    )
    # ... and the bundle reproduces the model as it was at the end of training
    assert result.metrics["selection"]["reload_max_abs_diff"] <= 1e-5
    test_ids = set(result.test_ids)
    again = evaluate(classifier, [p for p in papers if p.arxiv_id in test_ids])
    for space in ("domain", "group", "archive", "category"):
        assert again[space]["accuracy"] == result.metrics["test"][space]["accuracy"], space


def test_metrics_follow_the_evaluate_schema(trained: tuple[TrainResult, Path]) -> None:
    result, _ = trained
    metrics = json.loads((result.path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["version"] == result.version
    for split in ("val", "test"):
        for space in ("domain", "group", "archive", "category"):
            assert set(metrics[split][space]) >= SPACE_KEYS, (split, space)
        assert {"precision_at_1", "top5_micro_recall"} <= set(metrics[split]["category"])
        assert metrics[split]["categories"] is None  # no multi-label head
    assert metrics["test"]["domain"]["n"] == len(result.test_ids) > 0

    selection = metrics["selection"]
    assert selection["category_head"] == "finetune"
    assert selection["epochs_run"] == 2 == len(selection["val_loss"])
    n_classes = len(read_config(result.path).label_spaces["category"])
    # it learned something: better than the uniform guess a fresh classifier layer makes
    assert min(selection["val_loss"]) < math.log(n_classes)
    assert {"read_s", "fit_s", "total_s", "train_texts_per_s"} <= set(metrics["timing"])
    split = json.loads((result.path / "split.json").read_text())
    assert split["test_ids"] == result.test_ids and split["val_ids"] == result.val_ids


def test_early_stopping_keeps_the_best_epoch(
    papers: list[Paper], base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracked: list[tuple[dict[str, object], dict[str, object], Path]] = []
    monkeypatch.setattr("training.finetune.track_run", lambda *args: tracked.append(args))
    # learning rate 0: the validation loss never improves after epoch 1, so patience 1
    # stops training after epoch 2 of 6
    result = finetune_model(
        papers[:80],
        models_dir=tmp_path,
        base_model=str(base_model),
        now=WHEN,
        epochs=6,
        patience=1,
        learning_rate=0.0,
        max_length=32,
        device="cpu",
        progress=False,
    )
    selection = result.metrics["selection"]
    assert (selection["epochs_run"], selection["best_epoch"]) == (2, 1)
    assert selection["val_loss"][0] == selection["val_loss"][1]
    ((params, metrics, directory),) = tracked
    assert params["head"] == "finetune" and params["base_model"] == str(base_model)
    assert params["version"] == result.version and params["papers"] == 80
    assert metrics is result.metrics and directory == result.path


def test_a_bundle_without_its_weights_is_refused(
    trained: tuple[TrainResult, Path], tmp_path: Path
) -> None:
    result, _ = trained
    copy = shutil.copytree(result.path, tmp_path / result.version)
    (copy / "category" / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"category/model\.safetensors"):
        PaperClassifier.load(copy)


def test_cli_routes_finetune_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--snapshot",
            "s.jsonl",
            "--head",
            "finetune",
            "--base-model",
            "X",
            "--epochs",
            "2",
        ]
    )
    assert (args.head, args.base_model, args.epochs) == ("finetune", "X", 2)

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(
        "training.finetune.finetune_model", lambda papers, **kw: calls.append((papers, kw))
    )
    settings = Settings(data_dir=tmp_path, device="cpu")
    train(settings, Path("s.jsonl"), replace(train_options(args), max_samples=50), now=WHEN)
    (papers, kwargs) = calls[0]
    assert papers == Path("s.jsonl")
    assert kwargs["base_model"] == "X" and kwargs["epochs"] == 2 and kwargs["max_samples"] == 50
    assert kwargs["models_dir"] == settings.models_dir and kwargs["seed"] == 13

    plain = build_parser().parse_args(["train", "--snapshot", "s.jsonl", "--base-model", "X"])
    with pytest.raises(ConfigError, match="--head finetune"):
        train(settings, Path("s.jsonl"), train_options(plain), now=WHEN)
