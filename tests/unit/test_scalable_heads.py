"""The heads that scale to the 300k corpus, on ~4,000 real papers of the sample: the torch
softmax head (linear and hidden), the TF-IDF text head, the torch multi-label solver, the
large-regime selection with text fusion, and a bundle that reloads with identical scores.

Dense inputs are a 96-d LSA projection of the papers' TF-IDF (real text, no embedder), so
these tests take seconds; the embedder is covered by test_embedder.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.snapshot import read_snapshot
from models.heads import (
    FitSettings,
    MultiLabelHead,
    SoftmaxHead,
    TfidfHead,
    align_columns,
    fuse_log_linear,
    load_head,
)
from training import selection
from training.data import read_papers, split_papers
from training.labels import column

SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    data = read_papers(read_snapshot(shared_data / SAMPLE), max_samples=None, show=False)
    parts = split_papers(data, "stratified", val_fraction=0.1, test_fraction=0.1, seed=13)
    texts = [p.text for p in data.papers]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([texts[i] for i in parts.train])
    lsa = TruncatedSVD(96, random_state=0).fit(tfidf.transform([texts[i] for i in parts.train]))
    X = lsa.transform(tfidf.transform(texts)).astype(np.float32)
    return {
        "data": data,
        "parts": parts,
        "texts": texts,
        "X": X,
        "y": column(data.labels, "category"),
    }


def accuracy(classes: list[str], probs: np.ndarray, truth: list[str]) -> float:
    return float(np.mean([classes[j] == t for j, t in zip(probs.argmax(1), truth, strict=True)]))


def majority(real: dict) -> float:
    train = [real["y"][i] for i in real["parts"].train]
    top = max(set(train), key=train.count)
    return float(np.mean([real["y"][i] == top for i in real["parts"].test]))


@pytest.mark.parametrize("hidden", [0, 256])
def test_softmax_head_learns_real_papers_and_round_trips(
    real: dict, hidden: int, tmp_path: Path
) -> None:
    X, y, parts = real["X"], real["y"], real["parts"]
    head = SoftmaxHead(FitSettings(hidden=hidden, dropout=0.2 if hidden else 0.0, seed=1)).fit(
        X[parts.train], [y[i] for i in parts.train],
        X_val=X[parts.val], y_val=[y[i] for i in parts.val],
    )  # fmt: skip
    probs = head.predict_proba(X[parts.test])
    acc = accuracy(head.classes, probs, [y[i] for i in parts.test])
    assert acc > majority(real) + 0.25, (acc, majority(real))  # 143 classes; majority ~0.05
    assert head.epochs_trained >= 1
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    head.save(tmp_path, "category")
    again = load_head(tmp_path, "category")
    np.testing.assert_array_equal(again.predict_proba(X[parts.test]), probs)


def test_tfidf_head_learns_real_papers_and_round_trips(real: dict, tmp_path: Path) -> None:
    texts, y, parts = real["texts"], real["y"], real["parts"]
    head = TfidfHead(fit_settings=FitSettings(weight_decay=1e-6, max_epochs=6, seed=1)).fit(
        [texts[i] for i in parts.train], [y[i] for i in parts.train],
        texts_val=[texts[i] for i in parts.val], y_val=[y[i] for i in parts.val],
    )  # fmt: skip
    test_texts = [texts[i] for i in parts.test]
    probs = head.predict_proba_texts(test_texts)
    acc = accuracy(head.classes, probs, [y[i] for i in parts.test])
    assert acc > majority(real) + 0.25, (acc, majority(real))
    head.save(tmp_path, "text")
    assert not (tmp_path / "text.safetensors").read_bytes().startswith(b"\x80")  # no pickle
    again = load_head(tmp_path, "text")
    assert again.vocabulary == head.vocabulary
    np.testing.assert_array_equal(again.predict_proba_texts(test_texts), probs)


def test_fusion_alignment_keeps_unknown_classes_neutral() -> None:
    p_text = np.array([[0.7, 0.3]], dtype=np.float32)
    aligned = align_columns(p_text, ["a", "b"], ["a", "b", "c"])
    assert aligned.shape == (1, 3) and aligned[0, 2] == pytest.approx(0.5 / 1.5)
    p_emb = np.array([[0.2, 0.2, 0.6]], dtype=np.float32)
    fused = fuse_log_linear(p_emb, aligned, 0.5)
    np.testing.assert_allclose(fused.sum(), 1.0, atol=1e-6)
    assert fuse_log_linear(p_emb, aligned, 0.0) is p_emb


def test_torch_multilabel_solver_on_real_label_sets(real: dict, tmp_path: Path) -> None:
    X, data, parts = real["X"], real["data"], real["parts"]
    sets = [data.labels[i].categories for i in range(len(data.labels))]
    head = MultiLabelHead(solver="torch", seed=1).fit(
        X[parts.train], [sets[i] for i in parts.train],
        X_val=X[parts.val], y_val=[sets[i] for i in parts.val],
    )  # fmt: skip
    predicted = head.predict(X[parts.test])
    hits = sum(
        head.classes[j] in sets[i]
        for row, i in zip(predicted, parts.test, strict=True)
        for j in np.flatnonzero(row)
    )
    assert hits / max(int(predicted.sum()), 1) > 0.3  # precision of the predicted labels
    head.save(tmp_path, "categories")
    np.testing.assert_array_equal(
        load_head(tmp_path, "categories").predict(X[parts.test]), predicted
    )


def test_large_regime_selection_fits_torch_heads_and_a_fused_text_head(
    real: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "SCALE_ROWS", 1000)  # the sample counts as "large" here
    monkeypatch.setattr(selection, "TEXT_WEIGHTS", (0.0, 0.5, 1.0))
    heads, record = selection.fit_heads(
        real["X"], real["data"].labels, real["parts"], head="auto", seed=1, show=False,
        texts=real["texts"],
    )  # fmt: skip
    assert isinstance(heads["category"], SoftmaxHead)
    assert record["regime"].startswith("large")
    assert set(record["candidates_val_category_accuracy"]) == {
        "softmax linear",
        "softmax hidden=1024",
    }
    assert record["blend_val_score"] == {}  # no kNN at scale
    weight = record["text"]["text_weight"]
    assert record["decoding"]["text_weight"] == weight
    assert ("text" in heads) == (weight > 0)
    # LSA features are TF-IDF already, so the words cannot add much, but the fused or
    # single choice must be the best of the weights tried on validation
    scores = record["text"]["text_weight_val_score"]
    assert scores[str(weight)] == max(scores.values())


def test_tune_searches_the_softmax_head_and_the_best_trial_is_used(real: dict) -> None:
    from training.tuning import tune_softmax_head

    best, record = tune_softmax_head(real["X"], real["y"], real["parts"], trials=2, seed=3)
    assert record["trials"] == 2 and len(record["history"]) == 2
    assert record["best_val_category_accuracy"] == max(t["value"] for t in record["history"])
    assert best.hidden == record["best_params"]["hidden"] and best.seed == 3
    heads, selection_record = selection.fit_heads(
        real["X"], real["data"].labels, real["parts"], head="auto", seed=3, show=False,
        tuned=best,
    )  # fmt: skip
    assert isinstance(heads["category"], SoftmaxHead)
    assert selection_record["category_head"] == "softmax tuned"
    assert heads["category"].settings.hidden == best.hidden
