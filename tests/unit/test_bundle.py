"""Bundles, registry, device and decoding: generated embeddings, no embedding model."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ConfigError, ModelFormatError, ModelNotFoundError
from core.taxonomy import archive_of, domain_of, group_of
from models import device
from models.bundle import BundleConfig, EmbedderInfo, HeadInfo, read_config, write_config
from models.classifier import PaperClassifier
from models.device import resolve_device
from models.heads import LogRegHead, MultiLabelHead
from models.predict import BatchScores, MultiLabelScores, decode, marginalize, to_predictions
from models.registry import list_versions, new_version_id, publish, staging_dir, version_dir
from training.labels import category_mapping

CATEGORIES = ["astro-ph.GA", "cs.CV", "cs.LG", "hep-th", "math.AG", "math.NT"]
DIM = 16


def synthetic(n_per: int, seed: int = 0, spread: float = 0.4):
    """One blob per category; second declared category = the next one in the list."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(len(CATEGORIES), DIM)) * 2.0
    X = np.concatenate([c + spread * rng.normal(size=(n_per, DIM)) for c in centres])
    primary = [c for c in CATEGORIES for _ in range(n_per)]
    declared = [(c, CATEGORIES[(CATEGORIES.index(c) + 1) % len(CATEGORIES)]) for c in primary]
    return X.astype(np.float32), primary, declared


def make_bundle(directory: Path, *, version: str = "m20261121-230501-3fa2", mode: str = "top_down"):
    """A complete bundle over synthetic 16-d embeddings; returns the fitted heads."""
    X, primary, declared = synthetic(40)
    X_val, _, declared_val = synthetic(15, seed=1)
    heads = {
        "category": LogRegHead(C=1.0).fit(X, primary),
        "domain": LogRegHead(C=1.0).fit(X, [domain_of(c) for c in primary]),
        "categories": MultiLabelHead(C=1.0).fit(X, declared, X_val=X_val, y_val=declared_val),
    }
    for role, head in heads.items():
        head.save(directory, role)
    parents = category_mapping(CATEGORIES)
    config = BundleConfig(
        version=version,
        created_at=datetime(2026, 11, 21, 23, 5, 1, tzinfo=UTC).isoformat(),
        embedder=EmbedderInfo("fake/embedder", "fake/embedder@fp32", DIM, "fp32", 256),
        heads={role: HeadInfo(role, h.kind, role) for role, h in heads.items()},
        label_spaces={
            **{s: sorted({p[s] for p in parents.values()}) for s in ("domain", "group", "archive")},
            "category": CATEGORIES,
            "categories": heads["categories"].classes,
        },
        category_parents=parents,
        decoding={"mode": mode, "domain_source": "marginal", "why": "test"},
    )
    write_config(directory, config)
    return heads


def test_bundle_round_trip_gives_identical_probabilities(tmp_path: Path) -> None:
    heads = make_bundle(tmp_path)
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".safetensors"}
    clf = PaperClassifier.load(tmp_path, with_embedder=False)
    assert clf.version == "m20261121-230501-3fa2" and clf.model_id == "fake/embedder@fp32"
    X, primary, _ = synthetic(10, seed=3)
    scores = clf.score_embeddings(X)
    np.testing.assert_array_equal(
        scores.spaces["category"].probs, heads["category"].predict_proba(X)
    )
    assert scores.categories is not None
    np.testing.assert_array_equal(scores.categories.probs, heads["categories"].predict_proba(X))
    predictions = clf.predict_embeddings(X, top_k=3)
    assert [p.category.label for p in predictions] == primary
    for p in predictions:
        cat = p.category.label
        assert (p.domain.label, p.group.label, p.archive.label) == (
            domain_of(cat),
            group_of(cat),
            archive_of(cat),
        )
        assert len(p.category_top_k) == 3 and len(p.domain_top_k) == 3
        assert p.category_top_k[0].score >= p.category_top_k[1].score >= p.category_top_k[2].score
        assert p.category.label in [s.label for s in p.categories]


def test_missing_and_broken_bundles_say_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="arxiv-stream train"):
        PaperClassifier.load(tmp_path / "nope")
    make_bundle(tmp_path)
    (tmp_path / "domain.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"domain\.safetensors"):
        read_config(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"format": "other/9"}))
    with pytest.raises(ModelFormatError, match="other/9"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="arxiv-stream train"):
        read_config(tmp_path)


def test_category_classes_must_match_config(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["label_spaces"]["category"] = CATEGORIES[::-1]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="classes differ"):
        PaperClassifier.load(tmp_path, with_embedder=False)


# --- decoding ---------------------------------------------------------------------------------
PARENTS = category_mapping(["cs.LG", "math.AG", "math.NT"])
CLASSES = ["cs.LG", "math.AG", "math.NT"]
P = np.array([[0.40, 0.30, 0.30], [0.10, 0.85, 0.05]], dtype=np.float32)


def test_marginalize_sums_categories_into_parents() -> None:
    classes, probs = marginalize(P, [PARENTS[c]["domain"] for c in CLASSES])
    assert classes == ["Computer Science", "Mathematics"]
    np.testing.assert_allclose(probs, [[0.4, 0.6], [0.1, 0.9]], atol=1e-6)


def test_top_down_and_flat_decoding_differ_as_documented() -> None:
    flat = decode(P, CLASSES, PARENTS, mode="flat")
    assert flat["category"].predicted_labels() == ["cs.LG", "math.AG"]
    assert flat["domain"].predicted_labels() == ["Computer Science", "Mathematics"]
    top = decode(P, CLASSES, PARENTS, mode="top_down")
    # row 0: Mathematics has 0.6 of the mass, so its best category wins over cs.LG (0.4)
    assert top["domain"].predicted_labels() == ["Mathematics", "Mathematics"]
    assert top["archive"].predicted_labels() == ["math", "math"]
    assert top["category"].predicted_labels() == ["math.AG", "math.AG"]
    preds = to_predictions(BatchScores(top, None), k=2)
    assert preds[0].domain.score == pytest.approx(0.6)
    assert preds[0].category.score == pytest.approx(0.3)
    assert [s.label for s in preds[0].category_top_k] == ["cs.LG", "math.AG"]
    assert preds[0].categories == []


def test_direct_domain_head_steers_top_down_decoding() -> None:
    domain = (["Computer Science", "Mathematics"], np.array([[0.9, 0.1], [0.2, 0.8]], np.float32))
    top = decode(P, CLASSES, PARENTS, mode="top_down", domain=domain)
    assert top["domain"].predicted_labels() == ["Computer Science", "Mathematics"]
    assert top["category"].predicted_labels() == ["cs.LG", "math.AG"]


def test_multilabel_predictions_are_thresholded_and_sorted() -> None:
    spaces = decode(P, CLASSES, PARENTS)
    multi = MultiLabelScores(
        CLASSES, np.array([[0.5, 0.9, 0.2], [0.1, 0.1, 0.1]], np.float32), np.array([0.3, 0.3, 0.2])
    )
    preds = to_predictions(BatchScores(spaces, multi))
    assert [s.label for s in preds[0].categories] == ["math.AG", "cs.LG", "math.NT"]
    assert preds[1].categories == []


# --- registry ---------------------------------------------------------------------------------
def test_version_ids_sort_by_time_and_need_a_timezone() -> None:
    t = datetime(2026, 11, 21, 23, 5, 1, tzinfo=UTC)
    a = new_version_id(t)
    b = new_version_id(t.astimezone(timezone(timedelta(hours=5))) + timedelta(seconds=1))
    assert a.startswith("m20261121-230501-") and len(a) == len("m20261121-230501-3fa2")
    assert b.startswith("m20261121-230502-") and sorted([b, a]) == [a, b]
    with pytest.raises(ValueError, match="timezone"):
        new_version_id(datetime(2026, 11, 21))


def test_list_versions_sees_only_complete_bundles(tmp_path: Path) -> None:
    assert list_versions(tmp_path / "absent") == []
    old, new = "m20261120-000000-aaaa", "m20261121-000000-bbbb"
    make_bundle(staging_dir(tmp_path, new), version=new)
    assert list_versions(tmp_path) == []  # still staging
    assert publish(tmp_path, new) == tmp_path / new
    make_bundle(tmp_path / old, version=old)
    (tmp_path / "m20261122-000000-cccc").mkdir()  # no config.json
    (tmp_path / "notes").mkdir()
    assert list_versions(tmp_path) == [old, new]
    with pytest.raises(ModelNotFoundError):
        version_dir(tmp_path, "../etc")


# --- device -----------------------------------------------------------------------------------
def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto") == expected
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    ("version", "platform", "cpu_only"),
    [
        ("2.13.0+cpu", "linux", True),
        ("2.13.0", "linux", False),  # PyPI's Linux build carries CUDA
        ("2.13.0+cu126", "linux", False),
        ("2.13.0+rocm6.4", "linux", False),
        ("2.13.0+cpu", "darwin", False),  # macOS: MPS may be there, so torch is asked
    ],
)
def test_torch_build_read_from_metadata(
    monkeypatch: pytest.MonkeyPatch, version: str, platform: str, cpu_only: bool
) -> None:
    """``auto`` answers "cpu" without importing torch only for a CPU-only build off macOS;
    every other build is asked (the CUDA path, checked here on a CPU machine)."""
    monkeypatch.setattr(device.metadata, "version", lambda name: version)
    monkeypatch.setattr(device.sys, "platform", platform)
    device.torch_is_cpu_only.cache_clear()
    asked: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: asked.append(True) or True)
    try:
        assert device.torch_is_cpu_only() is cpu_only
        assert resolve_device("auto") == ("cpu" if cpu_only else "cuda")
        assert asked == ([] if cpu_only else [True])
    finally:
        device.torch_is_cpu_only.cache_clear()


def test_auto_device_does_not_import_torch_on_a_cpu_build() -> None:
    if not device.torch_is_cpu_only():
        pytest.skip("the installed torch is not a CPU-only build")
    code = (
        "import sys; from models.device import resolve_device as r; "
        "print(r('auto'), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["cpu", "False"]


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.mark.parametrize("rows", [10, 60])
def test_heads_use_one_blas_thread_for_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """Up to SERIAL_BLAS_ROWS rows the heads run on one BLAS thread (an idle OpenBLAS helper
    spins and takes a core from the embedder); larger products keep their threads, and the
    count is restored afterwards."""
    from threadpoolctl import threadpool_limits

    import core.machine

    make_bundle(tmp_path)
    clf = PaperClassifier.load(tmp_path, with_embedder=False)
    head = clf.heads["category"]
    seen: list[set[int]] = []
    original = head.predict_proba
    monkeypatch.setattr(
        head, "predict_proba", lambda X: (seen.append(_blas_threads()), original(X))[1]
    )
    monkeypatch.setattr(core.machine, "SERIAL_BLAS_ROWS", 30)
    X = np.concatenate([synthetic(10, seed=4)[0]] * 6)[:rows]
    if not _blas_threads():
        pytest.skip("no BLAS library loaded by numpy here")
    with threadpool_limits(limits=2, user_api="blas"):
        clf.score_embeddings(X)
        assert _blas_threads() == {2}
    assert seen == [{1}] if rows <= 30 else seen == [{2}]
