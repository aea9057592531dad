"""Heads on generated embeddings: they learn, they round-trip exactly, they never pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.errors import ModelFormatError
from models.heads import (
    HEAD_TYPES,
    Head,
    KNNBlendHead,
    LogRegHead,
    MLPHead,
    MultiLabelHead,
    SoftmaxHead,
    TfidfHead,
    label_matrix,
    load_head,
    tune_global_threshold,
    tune_thresholds,
)

CLASSES = ["astro-ph.GA", "cs.LG", "hep-th", "math.AG"]


def clusters(n_per: int, dim: int = 24, seed: int = 0, spread: float = 0.3):
    """Well separated Gaussian blobs, one per class: X float32 (n, dim), y labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), dim)) * 3.0
    X = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    y = [label for label in CLASSES for _ in range(n_per)]
    return X.astype(np.float32), y


def no_pickle(directory: Path) -> None:
    """Only JSON and safetensors, all with the same (umask) mode so other users can read."""
    modes = set()
    for path in directory.iterdir():
        assert path.suffix in {".json", ".safetensors"}, path
        assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"
        modes.add(path.stat().st_mode & 0o777)
    assert len(modes) == 1, modes


def accuracy(head, X, y) -> float:
    predicted = [head.classes[j] for j in head.predict_proba(X).argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, y, strict=True)]))


@pytest.mark.parametrize(
    "make", [lambda: LogRegHead(), lambda: MLPHead(hidden=32, lr=3e-3, max_epochs=60)]
)
def test_separable_problem_is_learned_and_round_trips(make, tmp_path: Path) -> None:
    X, y = clusters(60)
    X_test, y_test = clusters(20, seed=0, spread=0.3)
    head = make().fit(X, y)
    assert head.classes == CLASSES
    assert accuracy(head, X_test, y_test) >= 0.99

    probs = head.predict_proba(X_test)
    assert probs.shape == (len(y_test), len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    head.save(tmp_path, "category")
    no_pickle(tmp_path)
    again = load_head(tmp_path, "category")
    assert type(again) is type(head) and again.classes == head.classes
    np.testing.assert_array_equal(again.predict_proba(X_test), probs)


def test_logreg_numpy_prediction_matches_sklearn() -> None:
    X, y = clusters(30, spread=2.5)  # overlapping: probabilities far from 0/1
    head = LogRegHead(C=0.3).fit(X, y)
    scaled = (X - X.mean(axis=0)) / X.std(axis=0)
    ref = LogisticRegression(C=0.3, max_iter=500).fit(scaled, y)
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(scaled), atol=2e-4)


def test_logreg_binary_is_two_column_softmax() -> None:
    X, y = clusters(30, spread=2.5)
    keep = [i for i, label in enumerate(y) if label in ("cs.LG", "hep-th")]
    X2, y2 = X[keep], [y[i] for i in keep]
    head = LogRegHead(C=0.3).fit(X2, y2)
    scaled = (X2 - X2.mean(axis=0)) / X2.std(axis=0)
    ref = LogisticRegression(C=0.3, max_iter=500).fit(scaled, y2)
    assert head.predict_proba(X2).shape == (len(y2), 2)
    np.testing.assert_allclose(head.predict_proba(X2), ref.predict_proba(scaled), atol=2e-4)


def test_one_class_is_refused() -> None:
    X, _ = clusters(5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogRegHead().fit(X, ["cs.LG"] * len(X))


def test_mlp_is_seeded_and_stops_early() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    y = [CLASSES[i] for i in rng.integers(0, 4, size=300)]  # pure noise: val loss only rises
    a = MLPHead(hidden=32, patience=3, max_epochs=200, seed=7).fit(X, y)
    b = MLPHead(hidden=32, patience=3, max_epochs=200, seed=7).fit(X, y)
    for key in a.weights:
        np.testing.assert_array_equal(a.weights[key], b.weights[key])
    assert a.epochs_run < 40
    assert a.epochs_trained == a.epochs_run - 3
    c = MLPHead(hidden=32, patience=3, max_epochs=200, seed=8).fit(X, y)
    assert not np.array_equal(a.weights["w1"], c.weights["w1"])


def test_mlp_uses_given_validation_rows() -> None:
    X, y = clusters(40)
    X_val, y_val = clusters(10, seed=0)
    head = MLPHead(hidden=16, lr=3e-3, max_epochs=60).fit(
        X, y, X_val=X_val, y_val=[*y_val[:-1], "new.XX"]
    )
    assert accuracy(head, X_val, y_val) >= 0.99


def multilabel_data(n: int, seed: int):
    """Label a iff x0 > 0, b iff x1 > 0, rare iff x2 > 2.2 (about 1.4% of rows)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    y = [
        [name for name, on in (("a", r[0] > 0), ("b", r[1] > 0), ("rare", r[2] > 2.2)) if on]
        for r in X
    ]
    return X, y


def test_multilabel_learns_thresholds_and_round_trips(tmp_path: Path) -> None:
    X, y = multilabel_data(1500, seed=0)
    X_val, y_val = multilabel_data(400, seed=1)
    head = MultiLabelHead(C=1.0, min_positives=10).fit(X, y, X_val=X_val, y_val=y_val)
    assert head.classes == ["a", "b", "rare"]
    predicted = head.predict(X_val)
    truth = label_matrix(y_val, head.classes)
    assert (predicted[:, :2] == truth[:, :2]).mean() >= 0.97
    positives = truth.sum(axis=0)
    for j, count in enumerate(positives):  # rare labels keep the global threshold
        if count < 10:
            assert head.thresholds[j] == pytest.approx(head.global_threshold)

    head.save(tmp_path, "categories")
    no_pickle(tmp_path)
    again = load_head(tmp_path, "categories")
    np.testing.assert_array_equal(again.thresholds, head.thresholds)
    np.testing.assert_array_equal(again.predict_proba(X_val), head.predict_proba(X_val))
    assert again.global_threshold == head.global_threshold


def test_multilabel_without_validation_uses_default_threshold() -> None:
    X, y = multilabel_data(300, seed=2)
    head = MultiLabelHead(default_threshold=0.5).fit(X, y)
    assert np.all(head.thresholds == 0.5)


def test_tune_thresholds_golden() -> None:
    probs = np.array([[0.9, 0.3], [0.7, 0.2], [0.4, 0.6], [0.1, 0.1]], dtype=np.float32)
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=bool)
    # column 0: any threshold in (0.4, 0.7] is perfect; 0.5 is closest to the default 0.5
    # column 1: has 1 positive < min_positives=2 -> default
    out = tune_thresholds(probs, truth, min_positives=2, default=0.5)
    assert out.tolist() == pytest.approx([0.5, 0.5])
    out = tune_thresholds(probs, truth, min_positives=1, default=0.2)
    assert out[0] == pytest.approx(0.45) and out[1] == pytest.approx(0.35)
    # global micro-F1: (0.4, 0.6] keeps all 3 positives and no negative; ties -> highest
    assert tune_global_threshold(probs, truth) == pytest.approx(0.6)


def test_load_rejects_a_head_of_another_kind(tmp_path: Path) -> None:
    X, y = clusters(10)
    LogRegHead().fit(X, y).save(tmp_path, "category")
    with pytest.raises(ModelFormatError, match="expected a 'mlp' head"):
        MLPHead.load(tmp_path, "category")
    config = json.loads((tmp_path / "category.json").read_text())
    config["classes"] = config["classes"][:-1]
    (tmp_path / "category.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="weight rows"):
        load_head(tmp_path, "category")
    with pytest.raises(ModelFormatError, match="missing head config"):
        load_head(tmp_path, "nothing")


def test_every_head_kind_is_registered_and_embedding_heads_are_heads() -> None:
    """load_head knows every kind; the heads over embeddings satisfy the ``Head`` protocol
    (mypy checks the signatures; this checks the members are there at run time)."""
    embedding_heads = [LogRegHead, MLPHead, KNNBlendHead, SoftmaxHead, MultiLabelHead]
    assert {cls.kind: cls for cls in [*embedding_heads, TfidfHead]} == HEAD_TYPES
    for cls in embedding_heads:
        assert isinstance(cls(), Head), cls
    assert not isinstance(TfidfHead(), Head)  # it reads texts: predict_proba_texts
