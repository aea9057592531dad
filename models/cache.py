"""Embedding cache keyed by content: (sha256(text), model_id) -> float32 vector.

One SQLite file (``<dir>/embeddings.sqlite``, WAL mode) holds every model's vectors; a row
is 32 bytes of key plus ``4 * dim`` bytes of vector (1.6 KB for MiniLM: ~4 GB for 2.5M
papers). Misses are embedded in chunks and each chunk is committed before the next one
starts, so an interrupted backfill resumes where it stopped and a second run over the same
texts embeds nothing.

    cache = EmbeddingCache(settings.embedding_cache_dir)
    X = embed_with_cache(embedder, texts, cache)     # float32 (n, dim), input order
    cache.stats                                       # CacheStats(hits=..., misses=...)

The stream worker adds the vectors it computes anyway (``remember``), so the papers it has
labelled cost a retrain nothing to embed.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from core.progress import progress_bar

log = logging.getLogger(__name__)

_SQL_VARS = 500  # keys per SELECT ... IN (...)
REMEMBER_LOCK_S = 2.0
"""How long the worker's cache write waits for a lock (``remember``)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id TEXT NOT NULL,
    key BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, key)
) WITHOUT ROWID
"""


class TextEncoder(Protocol):
    """What the cache needs of an embedder (``models.embedder.Embedder`` fits)."""

    model_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


def text_key(text: str) -> bytes:
    """sha256 of the UTF-8 text (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors on disk under ``directory``; ``stats`` counts hits/misses since creation."""

    def __init__(self, directory: Path, *, lock_timeout_s: float = 60.0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "embeddings.sqlite"
        self._db = sqlite3.connect(self.path, timeout=lock_timeout_s)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self.stats = CacheStats()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, model_id: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys``: key -> float32 (dim,)."""
        found: dict[bytes, np.ndarray] = {}
        for chunk in _chunks(list(keys), _SQL_VARS):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector FROM embeddings WHERE model_id = ? AND key IN ({marks})",
                [model_id, *chunk],
            )
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[bytes(key)] = vector
        return found

    def put(self, model_id: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors`` float32 (len(keys), dim); one transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = ((model_id, key, vectors[i].tobytes()) for i, key in enumerate(keys))
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (model_id, key, vector) VALUES (?, ?, ?)", rows
            )

    def count(self, model_id: str | None = None) -> int:
        if model_id is None:
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        query = "SELECT COUNT(*) FROM embeddings WHERE model_id = ?"
        return int(self._db.execute(query, (model_id,)).fetchone()[0])


def remember(directory: Path, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Add vectors someone already computed (the stream worker's, as it labels) to the cache
    in ``directory``: one short connection and one transaction, so any thread may call it.
    A retrain then finds the papers the stream labelled already embedded. A cache another
    process holds locked longer than ``REMEMBER_LOCK_S`` raises (the caller skips the batch)
    rather than stalling the stream behind a long training write."""
    with EmbeddingCache(directory, lock_timeout_s=REMEMBER_LOCK_S) as cache:
        cache.put(model_id, [text_key(t) for t in texts], vectors)


def embed_with_cache(
    embedder: TextEncoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    *,
    chunk_size: int = 2048,
    show_progress: bool = False,
) -> np.ndarray:
    """Embeddings of ``texts`` float32 (n, dim), embedding only texts not cached yet.

    Identical texts are embedded once. ``cache=None`` embeds everything (no disk).
    """
    if cache is None:
        return embedder.encode(texts)
    keys = [text_key(t) for t in texts]
    unique: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        unique.setdefault(key, i)
    found = cache.get(embedder.model_id, list(unique), embedder.dim)
    missing = [key for key in unique if key not in found]
    cache.stats.hits += len(keys) - len(missing)
    cache.stats.misses += len(missing)
    log.info(
        "embedding cache %s: %d hits, %d to embed",
        embedder.model_id,
        len(keys) - len(missing),
        len(missing),
    )
    bar = progress_bar(len(missing), desc="embed", unit="text", enabled=show_progress)
    started, done = time.perf_counter(), 0
    for chunk in _chunks(missing, chunk_size):
        vectors = embedder.encode([texts[unique[key]] for key in chunk])
        cache.put(embedder.model_id, chunk, vectors)
        found.update(zip(chunk, vectors, strict=True))
        done += len(chunk)
        if show_progress:
            bar.update(len(chunk))
        else:  # no terminal (a service, `up`): progress goes to the log instead
            rate = done / max(time.perf_counter() - started, 1e-9)
            log.info(
                "embedded %d/%d texts, %.1f/s, ETA %.0fs",
                done, len(missing), rate, (len(missing) - done) / rate,
            )  # fmt: skip
    bar.close()
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for i, key in enumerate(keys):
        out[i] = found[key]
    return out


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
