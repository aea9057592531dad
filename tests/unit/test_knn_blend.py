"""KNNBlendHead on generated embeddings: exact kNN votes, blending, round trip, and the
training-time choice between it and plain logistic regression (validation only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelFormatError
from models.heads import KNNBlendHead, LogRegHead, load_head
from training.labels import PaperLabels, parents_of
from training.selection import BLEND_GRID, fit_heads
from training.splits import Split

PRIMARY = ["astro-ph.GA", "cs.LG", "hep-th", "math.AG"]
CROSS = {"cs.LG": "stat.ML", "hep-th": "gr-qc"}  # cross-lists that are never primary


def data(n_per: int, seed: int = 0, spread: float = 1.0, dim: int = 16):
    """Blobs per primary category; half of cs.LG / hep-th papers also declare CROSS[...]."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(len(PRIMARY), dim)) * 2.0
    X, sets = [], []
    for c, centre in zip(PRIMARY, centres, strict=True):
        for i in range(n_per):
            X.append(centre + spread * rng.normal(size=dim))
            sets.append((c, CROSS[c]) if c in CROSS and i % 2 else (c,))
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), sets


def brute_knn(head: KNNBlendHead, X: np.ndarray, memory: np.ndarray, sets) -> np.ndarray:
    """The documented rule, one query at a time, with plain Python."""
    index = {c: j for j, c in enumerate(head.classes)}
    M = memory / np.linalg.norm(memory, axis=1, keepdims=True)
    out = np.zeros((len(X), len(head.classes)))
    for i, q in enumerate(X / np.linalg.norm(X, axis=1, keepdims=True)):
        sims = M @ q
        near = np.argsort(-sims, kind="stable")[: head.k]
        for j in near:
            w = np.exp((sims[j] - sims[near[0]]) / head.tau)
            for c in set(sets[j]):
                out[i, index[c]] += w / len(set(sets[j]))
    return out / out.sum(axis=1, keepdims=True)


def test_knn_part_matches_brute_force_and_blend_is_convex() -> None:
    X, sets = data(30)
    Xq, _ = data(8, seed=1)
    y = [s[0] for s in sets]
    head = KNNBlendHead(k=7, tau=0.05, weight=0.4).fit(X, y, label_sets=sets)
    assert head.classes == sorted({*PRIMARY, *CROSS.values()})
    assert isinstance(head.logreg, LogRegHead) and head.logreg.classes == PRIMARY
    np.testing.assert_allclose(head.knn_proba(Xq), brute_knn(head, Xq, X, sets), atol=1e-5)

    probs = head.predict_proba(Xq)
    assert probs.dtype == np.float32 and probs.shape == (len(Xq), len(head.classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    columns = [head.classes.index(c) for c in PRIMARY]
    expected = 0.4 * head.knn_proba(Xq)
    expected[:, columns] += 0.6 * head.logreg.predict_proba(Xq)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    # a cross-listed category gets probability (from the kNN part) although never primary
    assert probs[:, head.classes.index("stat.ML")].max() > 0.1


def test_blocked_queries_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    X, sets = data(20)
    head = KNNBlendHead(k=5).fit(X, [s[0] for s in sets], label_sets=sets)
    whole = head.knn_proba(X)
    monkeypatch.setattr(KNNBlendHead, "_QUERY_BLOCK", len(X) * 3)  # 3 queries per block
    np.testing.assert_array_equal(head.knn_proba(X), whole)
    small = KNNBlendHead(k=500).fit(X, [s[0] for s in sets], label_sets=sets)  # k > memory
    np.testing.assert_allclose(small.knn_proba(X[:3]).sum(axis=1), 1.0, atol=1e-6)


def test_round_trip_without_pickle(tmp_path: Path) -> None:
    X, sets = data(15)
    head = KNNBlendHead(C=0.3, k=9, tau=0.1, weight=0.25).fit(
        X, [s[0] for s in sets], label_sets=sets
    )
    head.save(tmp_path, "category")
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".safetensors"}
    again = load_head(tmp_path, "category")
    assert type(again) is KNNBlendHead and again.classes == head.classes
    assert (again.k, again.tau, again.weight, again.C) == (9, 0.1, 0.25, 0.3)
    np.testing.assert_array_equal(again.predict_proba(X), head.predict_proba(X))

    config = json.loads((tmp_path / "category.json").read_text())
    config["classes"] = config["classes"][:2]
    (tmp_path / "category.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="outside its classes"):
        load_head(tmp_path, "category")


def test_bad_parameters_and_unfitted_use_are_refused() -> None:
    with pytest.raises(ValueError):
        KNNBlendHead(weight=1.5)
    with pytest.raises(ValueError):
        KNNBlendHead(k=0)
    with pytest.raises(RuntimeError):
        KNNBlendHead().predict_proba(np.zeros((1, 4), dtype=np.float32))


def labels_of_sets(sets) -> list[PaperLabels]:
    return [PaperLabels(**parents_of(s[0]), category=s[0], categories=tuple(s)) for s in sets]


@pytest.mark.parametrize("head", ["logreg-knn", "logreg", "auto"])
def test_training_chooses_the_blend_on_validation(
    head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, sets = data(40, spread=1.6)
    order = np.random.default_rng(3).permutation(len(X))
    parts = Split(
        sorted(order[:100].tolist()), sorted(order[100:130].tolist()), [], "stratified", 0
    )
    if head == "auto":  # keep it quick: no MLP
        import training.selection as train

        original = train._candidates
        monkeypatch.setattr(train, "_candidates", lambda h, s, **kw: original("logreg", s, **kw))
    heads, selection = fit_heads(X, labels_of_sets(sets), parts, head=head, seed=0, show=False)
    if head == "logreg":
        assert type(heads["category"]) is LogRegHead and selection["blend_val_score"] == {}
        return
    scores = selection["blend_val_score"]
    assert len(scores) == len(BLEND_GRID) + (head == "auto")
    assert scores[selection["category_head"]] == max(scores.values())
    if head == "logreg-knn":
        assert type(heads["category"]) is KNNBlendHead
    # the domain head is a logreg with the blend's C
    assert type(heads["domain"]) is LogRegHead and heads["domain"].C == heads["category"].C


def test_memory_is_capped_per_primary_category() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    y = ["a"] * 50 + ["b"] * 10
    head = KNNBlendHead(k=3, max_per_class=20, seed=1).fit(X, y)
    assert len(head.memory) == len(head.vote_index) == 30  # 20 of "a", all 10 of "b"
    again = KNNBlendHead(k=3, max_per_class=20, seed=1).fit(X, y)
    assert np.array_equal(head.memory, again.memory)  # the sample is seeded
    assert KNNBlendHead(k=3).fit(X, y).memory.shape == (60, 8)  # default cap not reached
