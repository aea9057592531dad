"""The baselines, in this process, in the worker's batch size: the model alone
(``BareInference``), and the worker's whole work per batch apart from Kafka (``BareWorker``).

Over the same texts, after one untimed warm-up batch, each batch is run two ways:
  predict   ``PaperClassifier.predict_texts``: what the worker's executor runs (baseline)
  split     ``classifier.embed`` then ``classifier.predict_embeddings``, each timed: the
            embedder's share of inference and what the heads + decoding cost.
The two ways alternate batch by batch (and which goes first alternates too), so on a
machine whose load drifts both see the same conditions and the share stays comparable.
``predict_again`` times the baseline once more after the pipeline ran: if the two
baselines disagree, the machine was not idle and the ratios are not to be trusted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import batches, rate
from bench.cpu import CpuMeter, postgres_pids
from core.clock import utc_now
from core.schemas import Paper, encode
from db import repository
from db.engine import create_async_engine_for
from models.classifier import PaperClassifier
from stream.pipeline import RawMessage, classify_batch

TOP_K = 5
"""The worker's default ``ARXIV_STREAM_TOP_K``: predictions carry the same top-k."""


class BareInference:
    """The bundle loaded as the worker loads it, kept for both baseline measurements."""

    def __init__(self, model_dir: Path, *, batch_size: int, device: str) -> None:
        start = time.perf_counter()
        # micro-batches as the worker runs them (ARXIV_STREAM_EMBED_BATCH_SIZE unset)
        self.classifier = PaperClassifier.load(model_dir, device=device)
        self.load_s = time.perf_counter() - start
        self.batch_size = batch_size

    def _predict(self, chunk: Sequence[str]) -> float:
        start = time.perf_counter()
        self.classifier.predict_texts(chunk, top_k=TOP_K)
        return time.perf_counter() - start

    def measure(self, texts: Sequence[str]) -> dict[str, Any]:
        """Warm up, then time both ways of running each batch of ``texts``."""
        classifier = self.classifier
        chunks = batches(texts, self.batch_size)
        # First calls pay one-off costs (allocator growth, lazy kernels): keep them out.
        classifier.predict_texts(chunks[0], top_k=TOP_K)

        predict_s = embed_s = heads_s = 0.0
        for i, chunk in enumerate(chunks):
            if i % 2:
                predict_s += self._predict(chunk)
            start = time.perf_counter()
            embeddings = classifier.embed(chunk)
            middle = time.perf_counter()
            classifier.predict_embeddings(embeddings, top_k=TOP_K)
            embed_s += middle - start
            heads_s += time.perf_counter() - middle
            if not i % 2:
                predict_s += self._predict(chunk)

        n = len(texts)
        assert classifier.embedder is not None  # loaded with its embedder above
        return {
            "model_version": classifier.version,
            "embedder": classifier.model_id,
            "embedder_variant": classifier.embedder_variant,
            "device": classifier.embedder.device,
            "load_s": round(self.load_s, 2),
            "papers": n,
            "batch_size": self.batch_size,
            "predict_s": round(predict_s, 3),
            "predict_papers_per_s": round(rate(n, predict_s), 2),
            "embed_s": round(embed_s, 3),
            "embed_papers_per_s": round(rate(n, embed_s), 2),
            "heads_s": round(heads_s, 3),
            "heads_papers_per_s": round(rate(n, heads_s), 2),
        }

    def predict_again(self, texts: Sequence[str]) -> float:
        """papers/s of the baseline alone (``predict_texts`` per batch), already warm."""
        seconds = sum(self._predict(chunk) for chunk in batches(texts, self.batch_size))
        return round(rate(len(texts), seconds), 2)


class BareWorker:
    """The worker's own work per batch, without Kafka: the baseline the pipeline is held to.

    Per batch of the worker's size, as ``stream.agent`` does it, serially: decode the
    messages and classify them (``stream.pipeline.classify_batch``), then one transaction
    that upserts the papers and labels and reads which are unsent (``write_batch``), then
    the published mark, then the embeddings into pgvector (where the database has it, as
    the worker does) and into the training cache (``cache_dir``). Into
    its own PostgreSQL (``database_url``, migrated, the model registered). Before each pass
    (untimed) its labels are truncated, so every pass inserts and marks each label as the
    worker does with a new paper; the papers and their embeddings are upserted again."""

    def __init__(
        self,
        classifier: PaperClassifier,
        database_url: str,
        *,
        batch_size: int,
        cache_dir: Path,
        pgdata: Path,
    ) -> None:
        self.classifier = classifier
        self.database_url = database_url
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.pgdata = pgdata
        self.last_cpu: dict[str, float] = {}
        """CPU-seconds of the last pass: this process (``driver``) and its PostgreSQL."""

    def papers_per_s(self, papers: Sequence[Paper]) -> float:
        return asyncio.run(self._run(papers))

    async def _run(self, papers: Sequence[Paper]) -> float:
        from stream.agent import (  # the worker's own code
            keep_embeddings,
            label_key,
            mark_published,
            remember_embeddings,
            write_batch,
        )

        messages = [RawMessage(p.arxiv_id, encode(p)) for p in papers]
        engine = create_async_engine_for(self.database_url)
        async with engine.connect() as conn:  # as stream.worker decides it
            vectors = await repository.has_vector_store(conn)
        async with engine.begin() as conn:  # new labels, to insert and to mark as sent
            await conn.execute(text("TRUNCATE labels"))  # no dead rows left behind
        meter = CpuMeter(
            {"driver": lambda: [os.getpid()], "postgres": lambda: postgres_pids(self.pgdata)},
            alone=["driver"],
        )
        try:
            cpu_before = meter.read()
            start = time.perf_counter()
            for chunk in batches(messages, self.batch_size):
                result = classify_batch(
                    chunk, self.classifier, topic="bench", top_k=TOP_K, clock=utc_now
                )
                unsent = await write_batch(engine, result.classified, result.papers, utc_now())
                await mark_published(
                    engine, [label_key(c) for c in result.classified if label_key(c) in unsent],
                    utc_now(),
                )  # fmt: skip
                if vectors:  # pgvector rows for similar papers, as the worker keeps them
                    await keep_embeddings(engine, result, result.classified, utc_now())
                await remember_embeddings(self.cache_dir, result)
            seconds = time.perf_counter() - start
            self.last_cpu = meter.since(cpu_before)
        finally:
            await engine.dispose()
        return round(rate(len(papers), seconds), 2)
