"""Warm starts (models.heads.warm) and the joint one-vs-rest fit (models.heads.ovr): the
start computes exactly the incumbent's function, the fit reaches the cold fit's optimum in
fewer steps, and a warm torch fit never keeps weights worse than where it began."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.schemas import Paper
from models.cache import EmbeddingCache, embed_with_cache, remember
from models.heads import LogRegHead, MultiLabelHead, SoftmaxHead, label_matrix
from models.heads.common import Standardizer
from models.heads.ovr import fit_one_vs_rest
from models.heads.torchfit import FitSettings, forward_numpy
from models.heads.warm import align_outputs, network_start, rebase_linear
from stream.agent import remember_embeddings
from stream.pipeline import BatchResult
from tests.unit.test_heads import CLASSES, clusters


def _paper(arxiv_id: str) -> Paper:
    return Paper(
        arxiv_id=arxiv_id, version=1, title=f"Title {arxiv_id}", abstract="An abstract.",
        categories=[CLASSES[0]], source="snapshot",
    )  # fmt: skip


def _scale(rng: np.random.Generator, d: int) -> Standardizer:
    return Standardizer(rng.normal(size=d), rng.uniform(0.5, 2.0, size=d))


def test_rebased_weights_give_the_same_outputs_under_the_new_standardiser() -> None:
    rng = np.random.default_rng(0)
    old, new = _scale(rng, 6), _scale(rng, 6)
    coef, intercept = rng.normal(size=(4, 6)), rng.normal(size=4)
    x = rng.normal(size=(10, 6)).astype(np.float32)
    rebased, bias = rebase_linear(coef, intercept, old, new)
    np.testing.assert_allclose(old(x) @ coef.T + intercept, new(x) @ rebased.T + bias, atol=1e-4)


def test_outputs_follow_the_classes_by_name() -> None:
    coef = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    intercept = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    out, bias = align_outputs(coef, intercept, ["a", "b", "c"], ["c", "new", "a"])
    np.testing.assert_array_equal(out, [[3.0, 3.0], [0.0, 0.0], [1.0, 1.0]])
    # the class the earlier fit never saw starts at the lowest earlier bias: unlikely
    np.testing.assert_array_equal(bias, [0.25, -1.0, 0.5])


def test_a_hidden_layer_network_start_computes_the_incumbents_function() -> None:
    rng = np.random.default_rng(1)
    old, new = _scale(rng, 5), _scale(rng, 5)
    weights = {
        "w1": rng.normal(size=(5, 8)).astype(np.float32),
        "b1": rng.normal(size=8).astype(np.float32),
        "w2": rng.normal(size=(8, 3)).astype(np.float32),
        "b2": rng.normal(size=3).astype(np.float32),
    }
    start = network_start(
        weights,
        old_scale=old,
        old_classes=["a", "b", "c"],
        new_scale=new,
        new_classes=["a", "b", "c"],
    )
    x = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(
        forward_numpy(weights, old(x)), forward_numpy(start, new(x)), atol=1e-4
    )


def test_a_warm_logreg_reaches_the_cold_optimum_in_fewer_iterations() -> None:
    X, y = clusters(80, spread=1.5)
    more_X, more_y = clusters(4, seed=5, spread=1.5)  # a few new papers
    incumbent = LogRegHead(C=0.5).fit(X, y)
    X2, y2 = np.concatenate([X, more_X]), y + more_y
    cold = LogRegHead(C=0.5).fit(X2, y2)
    warm = LogRegHead(C=0.5).fit(X2, y2, init=incumbent)
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.predict_proba(X2), cold.predict_proba(X2), atol=2e-3)


def test_the_joint_one_vs_rest_fit_is_scikit_learns_per_label_fit() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    Y = (X[:, :3] + 0.5 * rng.normal(size=(300, 3)) > 0.3).astype(np.float32)
    coef, intercept, _ = fit_one_vs_rest(X, Y, C=0.1, max_iter=500, tol=1e-6)
    for j in range(3):
        reference = LogisticRegression(C=0.1, tol=1e-8, max_iter=1000).fit(X, Y[:, j])
        np.testing.assert_allclose(coef[j], reference.coef_[0], atol=1e-3)
        np.testing.assert_allclose(intercept[j], reference.intercept_[0], atol=1e-3)


def test_a_warm_multilabel_fit_starts_from_the_incumbent_and_matches_a_cold_one() -> None:
    X, y = clusters(50, spread=1.0)
    label_sets = [[label, "cs.LG"] if label == "math.AG" else [label] for label in y]
    incumbent = MultiLabelHead(C=0.1).fit(X, label_sets)
    cold = MultiLabelHead(C=0.1).fit(X[:-10], label_sets[:-10])
    warm = MultiLabelHead(C=0.1).fit(X[:-10], label_sets[:-10], init=incumbent)
    assert warm.iterations < cold.iterations
    assert warm.classes == cold.classes
    np.testing.assert_allclose(warm.predict_proba(X), cold.predict_proba(X), atol=5e-3)
    truth = label_matrix(label_sets, warm.classes).astype(bool)
    assert (warm.predict(X) == truth).mean() > 0.95


def test_a_warm_torch_fit_never_keeps_worse_than_its_start() -> None:
    X, y = clusters(40, spread=4.0)  # overlapping classes: a minimum to overshoot
    codes = np.array([CLASSES.index(label) for label in y])

    def loss(head: SoftmaxHead) -> float:
        return float(-np.mean(np.log(head.predict_proba(X)[np.arange(len(y)), codes] + 1e-12)))

    good = SoftmaxHead(FitSettings(lr=5e-3, max_epochs=80, patience=80)).fit(X, y, X_val=X, y_val=y)
    wild = FitSettings(lr=20.0, max_epochs=2, patience=1)  # steps that overshoot the minimum
    refit = SoftmaxHead(wild).fit(X, y, X_val=X, y_val=y, init=good)
    cold_wild = SoftmaxHead(wild).fit(X, y, X_val=X, y_val=y)
    assert loss(cold_wild) > loss(good) + 0.1  # such steps do make it worse
    assert refit.epochs_trained == 0  # so the start was kept
    assert loss(refit) == pytest.approx(loss(good), abs=1e-4)


def test_vectors_the_worker_remembers_are_cache_hits_for_training(tmp_path: Path) -> None:
    class NoModel:
        model_id, dim = "m@fp32", 3

        def encode(self, texts: object) -> np.ndarray:
            raise AssertionError("everything should come from the cache")

    papers = [_paper(f"2401.0000{i}") for i in range(2)]
    vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    result = BatchResult(papers=papers, embeddings=list(vectors), computed_by="m@fp32")
    asyncio.run(remember_embeddings(tmp_path, result))
    with EmbeddingCache(tmp_path) as cache:
        X = embed_with_cache(NoModel(), [p.text for p in papers], cache)
        assert cache.stats.hits == 2
    np.testing.assert_array_equal(X, np.array(vectors, dtype=np.float32))
    remember(tmp_path, "m@fp32", [papers[0].text], np.zeros((1, 3), dtype=np.float32))  # upsert
    with EmbeddingCache(tmp_path) as cache:
        assert cache.count("m@fp32") == 2


def test_a_cache_that_cannot_be_written_does_not_fail_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    paper = _paper("2401.00001")
    result = BatchResult(papers=[paper], embeddings=[[1.0, 0.0]], computed_by="m@fp32")
    asyncio.run(remember_embeddings(blocked / "cache", result))
    assert "could not cache 1 embeddings" in caplog.text


def test_an_mlp_started_from_an_incumbent_computes_its_function() -> None:
    from models.heads import MLPHead

    X, y = clusters(30, spread=1.0)
    incumbent = MLPHead(hidden=16, max_epochs=20).fit(X, y)
    other = np.concatenate([X, X[:20] + 3.0])  # another standardiser: rebase, not copy
    unchanged = MLPHead(hidden=16, max_epochs=0).fit(other, y + y[:20], init=incumbent)
    np.testing.assert_allclose(unchanged.predict_proba(X), incumbent.predict_proba(X), atol=1e-4)
    with pytest.raises(RuntimeError, match="same width"):
        MLPHead(hidden=8).fit(X, y, init=incumbent)


def test_a_warm_retrain_embeds_as_the_incumbent_is_served_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An fp16 (CUDA) incumbent retrained on a CPU embeds in fp32, keyed as the worker
    keys its cached vectors, instead of failing on its first uncached text."""
    from types import SimpleNamespace

    import training.train as train_module
    from models.bundle import EmbedderInfo

    info = EmbedderInfo(
        name="sentence-transformers/all-MiniLM-L6-v2",
        model_id="sentence-transformers/all-MiniLM-L6-v2@fp16",
        dim=384, variant="fp16", max_seq_length=256,
    )  # fmt: skip
    config = SimpleNamespace(embedder=info, version="m20261201-000000-abcd")
    monkeypatch.setattr(train_module, "read_config", lambda _: config)
    found = train_module._incumbents_embedder(tmp_path, "all-MiniLM-L6-v2", "cpu", None)
    assert found is not None and found.variant == "fp32" and not found.loaded
    assert found.model_id == "sentence-transformers/all-MiniLM-L6-v2@fp32"
    assert train_module._incumbents_embedder(tmp_path, "other/model", "cpu", None) is None


def test_a_locked_cache_costs_the_worker_a_bounded_wait_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    with EmbeddingCache(tmp_path):
        pass
    holder = sqlite3.connect(tmp_path / "embeddings.sqlite")
    holder.execute("BEGIN EXCLUSIVE")  # a long training write, say
    try:
        result = BatchResult(
            papers=[_paper("2401.00001")], embeddings=[[1.0]], computed_by="m@fp32"
        )
        asyncio.run(remember_embeddings(tmp_path, result))
    finally:
        holder.rollback()
        holder.close()
    assert "could not cache 1 embeddings: database is locked" in caplog.text
