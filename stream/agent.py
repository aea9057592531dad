"""The classification agent: take a batch, classify it off the loop, write, publish.

Order per batch (at-least-once; one decision point per failure, each with a destination):
 1. the model holder hands out the current model (a promotion swaps it here, between batches);
 2. ``classify_batch`` runs in a thread (long CPU work on the loop stops heartbeats);
    undecodable or oversize messages -> dead letter ``decode``; model failures -> ``classify``;
 3. one transaction upserts the batch's papers and labels (idempotent, keyed). A transient
    error (database unreachable: ``StorageError``, OSError, timeouts) is retried with backoff
    and the batch is not acknowledged until it succeeds. Any other refusal is permanent: the
    batch is written again paper by paper and the papers PostgreSQL refuses alone become
    dead letters ``store``; the rest are stored;
 4. one message per stored label not yet published to ``classified-papers``, each send
    awaited; delivered ones are marked (``labels.published_at``). A failed send leaves the
    mark unset and stream.delivery re-sends it later (dead letter ``publish`` is not needed:
    the label is safe in PostgreSQL). Dead letters are sent with retries until the broker
    takes them (they are bounded in size, so they always fit).
The batch's embeddings also go to the training embedding cache (models.cache.remember,
best effort), so a retrain finds the papers the stream labelled already embedded.
A batch is acknowledged (stream.batching) only when steps 3-4 are done for it, so nothing is
acked with an unhandled failure in it. Steps 3-4 of batch k run while later batches are
embedded (step 2): the CPU is not idle while the database and the broker answer. With
OpenVINO two batches are in step 2 at once (``concurrent_batches``), so no core waits for a
batch's last micro-batch. Steps 3-4 run one batch at a time, in batch order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import faust
import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import StorageError
from core.schemas import ClassifiedPaper, DeadLetter, Paper, encode
from core.settings import Settings
from db import repository
from db.repository import LabelKey
from db.vector_store import EMBEDDING_DIM
from models.cache import remember
from stream import metrics
from stream.batching import Batch, batches
from stream.model_holder import ModelHolder
from stream.pipeline import (
    BatchResult,
    Classifier,
    RawMessage,
    classify_batch,
    dead_letter,
    label_rows,
)

log = logging.getLogger(__name__)

DB_RETRY_MAX_S = 30.0
SEND_RETRY_MAX_S = 30.0


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying as it is: the database or network is away, not refusing the data."""
    return isinstance(exc, StorageError | OSError | TimeoutError | ConnectionError)


def batches_at_once(settings: Settings, model: object) -> int:
    """What the model says it takes at once (one if it says nothing: a fine-tuned encoder's
    tokenizer, for one, is not safe from two threads), lowered to
    ``ARXIV_STREAM_CONCURRENT_BATCHES`` where that is set."""
    own = max(1, int(getattr(model, "concurrent_batches", 1)))
    wanted = settings.concurrent_batches
    return own if wanted is None else min(own, wanted)


async def stop_reading(
    upcoming: asyncio.Future[Any] | None, source: AsyncGenerator[Any, None]
) -> None:
    """Stop the agent's reading: cancel a pending next batch and close the batch generator
    (its pump stops). A failure of the stream met here is logged, not raised over the
    error that ended the agent (if any)."""
    if upcoming is not None:
        if not upcoming.done():
            upcoming.cancel()
            await asyncio.wait([upcoming])
        if not upcoming.cancelled():
            upcoming.exception()  # retrieved: raised in the loop already, or not the cause
    try:
        await source.aclose()
    except Exception as exc:
        log.warning("the paper stream failed as it closed: %s", exc)


def label_key(paper: ClassifiedPaper) -> LabelKey:
    return (paper.arxiv_id, paper.version, paper.model_version)


async def write_batch(
    engine: AsyncEngine, classified: list[ClassifiedPaper], papers: list[Paper], now: datetime
) -> set[LabelKey]:
    """Papers (so labels never miss their parent row) and labels in one transaction,
    retried while the database is unreachable. Returns the keys whose message is still to
    be sent. A permanent refusal is raised (``write_isolating`` handles it)."""
    delay = 1.0
    while True:
        try:
            async with engine.begin() as conn:
                await repository.upsert_papers(conn, papers, now=now, seen=False)
                await repository.upsert_labels(conn, label_rows(classified))
                return await repository.unpublished_keys(conn, map(label_key, classified))
        except Exception as exc:
            if not is_transient(exc):
                raise
            metrics.DB_RETRIES.inc()
            log.error("database write failed (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, DB_RETRY_MAX_S)


async def write_isolating(
    engine: AsyncEngine,
    classified: list[ClassifiedPaper],
    papers: list[Paper],
    sources: list[RawMessage],
    *,
    now: datetime,
    topic: str,
) -> tuple[list[ClassifiedPaper], set[LabelKey], list[DeadLetter]]:
    """Write the batch; if PostgreSQL refuses it, write paper by paper and dead-letter
    (``store``) the ones it refuses alone. Returns (stored, keys to send, dead letters)."""
    try:
        return classified, await write_batch(engine, classified, papers, now), []
    except Exception as exc:
        log.error("database refused a batch of %d (%s); writing one by one", len(papers), exc)
    stored: list[ClassifiedPaper] = []
    to_send: set[LabelKey] = set()
    dead: list[DeadLetter] = []
    for label, paper, source in zip(classified, papers, sources, strict=True):
        try:
            to_send |= await write_batch(engine, [label], [paper], now)
            stored.append(label)
        except Exception as exc:
            log.error("database refused paper %s: %s", paper.arxiv_id, exc)
            dead.append(dead_letter(source, reason="store", error=exc, topic=topic, now=now))
    return stored, to_send, dead


Send = Callable[[bytes | None, bytes], Awaitable[Any]]


async def deliver(send: Send, items: Sequence[tuple[bytes | None, bytes]]) -> list[bool]:
    """Send every (key, value) and wait until the broker acknowledged each; True per item
    delivered. A send that raises (broker away, message refused) is False, never lost from
    view: callers keep what was not delivered."""
    futures: list[Any] = []
    for key, value in items:
        try:
            futures.append(await send(key, value))
        except Exception as exc:
            futures.append(exc)
    outcomes = await asyncio.gather(
        *(_await(f) for f in futures), return_exceptions=True
    )  # each: metadata, or the exception
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        log.error("%d of %d sends failed: %s", len(failed), len(items), failed[0])
    return [not isinstance(o, BaseException) for o in outcomes]


async def _await(future: Any) -> Any:
    """A send's delivery: Faust's ``send`` returns a future of the broker's acknowledgement."""
    if isinstance(future, BaseException):
        raise future
    return await future if inspect.isawaitable(future) else future


async def deliver_until_sent(send: Send, items: Sequence[tuple[bytes | None, bytes]]) -> None:
    """``deliver`` again and again (with backoff) until every item is acknowledged. For dead
    letters, which live nowhere else; they are bounded in size, so only an outage fails."""
    pending = list(items)
    delay = 1.0
    while pending:
        delivered = await deliver(send, pending)
        pending = [item for item, ok in zip(pending, delivered, strict=True) if not ok]
        if pending:
            log.error("%d dead letters not delivered; retrying in %.0fs", len(pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SEND_RETRY_MAX_S)


async def keep_embeddings(
    engine: AsyncEngine, result: BatchResult, stored: list[ClassifiedPaper], now: datetime
) -> None:
    """Store the stored papers' embeddings for similar-papers search. Best effort, in its
    own transaction: labels never wait for or fail with it."""
    wanted = {label_key(c)[:2] for c in stored}
    rows = [
        (paper.arxiv_id, paper.version, vector)
        for paper, vector in zip(result.papers, result.embeddings, strict=True)
        if vector is not None
        and len(vector) == EMBEDDING_DIM
        and (paper.arxiv_id, paper.version) in wanted
    ]
    if not rows or result.embedder is None:
        return
    try:
        async with engine.begin() as conn:
            await repository.upsert_embeddings(conn, rows, embedder=result.embedder, now=now)
    except Exception as exc:  # similar papers lag; nothing is lost
        log.warning("could not store %d embeddings: %s", len(rows), str(exc).splitlines()[0])


async def remember_embeddings(cache_dir: Path, result: BatchResult) -> None:
    """Add the batch's embeddings to the training embedding cache (models.cache), so a
    retrain does not embed these papers again. Best effort, off the event loop: a full disk
    or a cache locked for more than ``models.cache.REMEMBER_LOCK_S`` costs that retrain the
    embedding, and this batch at most that wait."""
    pairs = [
        (paper.text, vector)
        for paper, vector in zip(result.papers, result.embeddings, strict=True)
        if vector is not None
    ]
    if not pairs or result.computed_by is None:
        return
    texts = [text for text, _ in pairs]
    vectors = np.asarray([vector for _, vector in pairs], dtype=np.float32)
    call = partial(remember, cache_dir, result.computed_by, texts, vectors)
    try:
        await asyncio.get_running_loop().run_in_executor(None, call)
    except Exception as exc:
        log.warning("could not cache %d embeddings: %s", len(texts), str(exc).splitlines()[0])


async def record_dead_letters(engine: AsyncEngine, letters: Sequence[DeadLetter]) -> None:
    """A row per dead letter for the API's statistics. Best effort: the dead-letter topic
    is their destination and already has them."""
    if not letters:
        return
    try:
        async with engine.begin() as conn:
            await repository.record_dead_letters(conn, letters)
    except Exception as exc:
        log.warning("could not record %d dead letters: %s", len(letters), str(exc).splitlines()[0])


async def mark_published(engine: AsyncEngine, keys: list[LabelKey], now: datetime) -> None:
    """Best effort: an unmarked label is only sent once more (stream.delivery)."""
    if not keys:
        return
    try:
        async with engine.begin() as conn:
            await repository.mark_labels_published(conn, keys, now=now)
    except Exception as exc:
        log.error("could not mark %d labels published (%s); they will be re-sent", len(keys), exc)


def register_classifier(
    app: faust.App,
    settings: Settings,
    *,
    holder: ModelHolder,
    engine: AsyncEngine,
    clock: Callable[[], datetime],
    store_embeddings: bool = False,
    cache_dir: Path | None = None,
) -> faust.types.AgentT[Any]:
    """The classification agent on ``app``. ``store_embeddings``: keep vectors in pgvector
    for similar papers; ``cache_dir``: add them to the training embedding cache too."""
    papers_topic = app.topic(settings.topic_papers, key_serializer="raw", value_serializer="raw")
    classified_topic = app.topic(
        settings.topic_classified, key_serializer="raw", value_serializer="raw"
    )
    dead_letter_topic = app.topic(
        settings.topic_dead_letter, key_serializer="raw", value_serializer="raw"
    )

    async def send_classified(key: bytes | None, value: bytes) -> Any:
        return await classified_topic.send(key=key, value=value)

    async def send_dead(key: bytes | None, value: bytes) -> Any:
        return await dead_letter_topic.send(key=key, value=value)

    async def finish(batch: Batch, result: BatchResult, model_version: str, started: float) -> None:
        """Store and send one classified batch, dead-letter what failed, then ack it."""
        stored: list[ClassifiedPaper] = []
        to_send: set[LabelKey] = set()
        if result.classified:
            stored, to_send, refused = await write_isolating(
                engine, result.classified, result.papers, result.sources,
                now=clock(), topic=settings.topic_papers,
            )  # fmt: skip
            result.dead_letters.extend(refused)
        outgoing = [c for c in stored if label_key(c) in to_send]
        delivered = await deliver(
            send_classified, [(c.arxiv_id.encode(), encode(c)) for c in outgoing]
        )
        await mark_published(
            engine, [label_key(c) for c, ok in zip(outgoing, delivered, strict=True) if ok],
            clock(),
        )  # fmt: skip
        if store_embeddings:
            await keep_embeddings(engine, result, stored, clock())
        if cache_dir is not None:
            await remember_embeddings(cache_dir, result)
        for dead in result.dead_letters:
            log.warning("dead-lettered a message (%s): %s", dead.reason, dead.error[:200])
        await deliver_until_sent(
            send_dead,
            [(d.key.encode() if d.key else None, encode(d)) for d in result.dead_letters],
        )
        await record_dead_letters(engine, result.dead_letters)
        await batch.ack()  # every paper of the batch has its destination: commit may pass it
        metrics.CLASSIFIED.inc(len(stored))
        metrics.SENT.inc(sum(delivered))
        for dead in result.dead_letters:
            metrics.DEAD_LETTERS.labels(dead.reason).inc()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "batch: %d classified with %s (%d sent, %d already sent), %d dead-lettered",
            len(stored), model_version, sum(delivered), len(stored) - len(outgoing),
            len(result.dead_letters),
        )  # fmt: skip

    def classify_timed(messages: list[RawMessage], model: Classifier) -> BatchResult:
        """``classify_batch`` in an executor thread, timed there (batches overlap)."""
        with metrics.MODEL_SECONDS.time():
            return classify_batch(
                messages, model, topic=settings.topic_papers, top_k=settings.top_k, clock=clock
            )

    @app.agent(papers_topic, name="classify-papers")
    async def classify(stream: faust.StreamT[Any]) -> None:
        """Up to ``batches_at_once`` batches are classified at once (2 with OpenVINO, whose
        streams take both; 1 on torch), and batch k is stored and sent while later ones are
        embedded. Batches are finished one at a time, in batch order, and each is acked only
        when its own ``finish`` is done. A classified batch never waits for the next one to
        fill, nor for a promoted model to load: the oldest batch is finished as soon as its
        model call returns (a lone paper goes at once)."""
        loop = asyncio.get_running_loop()
        classifying: deque[tuple[Batch, asyncio.Future[BatchResult], str, float]] = deque()
        writing: asyncio.Future[None] | None = None

        async def finish_oldest() -> None:
            """Schedule the oldest batch's ``finish`` once its model call and the batch
            before it are done. It leaves the queue only then, so a batch whose call failed
            or was cut short stays at the head and no later batch is acked past it
            (at-least-once). Shielded: cancelling the agent cancels neither the model call
            nor a ``finish`` under way, and the exit below waits for both."""
            nonlocal writing
            batch, classified, version, started = classifying[0]
            result = await asyncio.shield(classified)
            if writing is not None:
                await asyncio.shield(writing)  # batch k is safe before batch k+1 is written
            classifying.popleft()
            writing = asyncio.ensure_future(finish(batch, result, version, started))

        source = batches(
            stream, max_=settings.batch_size, within_s=settings.batch_within_s,
            idle_s=settings.batch_idle_s,
        )  # fmt: skip

        async def next_batch() -> tuple[Batch, Classifier, float] | None:
            """The next batch and the model for it (a promotion loads here, while the
            batches before it are finished), or None when the stream ends."""
            batch = await anext(source, None)
            if batch is None:
                return None
            started = time.perf_counter()
            return batch, await holder.current(), started

        upcoming: asyncio.Future[tuple[Batch, Classifier, float] | None] | None = None
        try:
            while True:
                upcoming = asyncio.ensure_future(next_batch())
                while classifying and not upcoming.done():
                    oldest = classifying[0][1]
                    either: list[asyncio.Future[Any]] = [upcoming, oldest]
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    if oldest.done():
                        await finish_oldest()
                got = await upcoming
                if got is None:
                    break
                batch, model, started = got
                messages = [RawMessage(_as_text(e.key), _as_bytes(e.value)) for e in batch.events]
                metrics.MODEL.info({"version": model.version})
                metrics.BATCH_SIZE.observe(len(messages))
                classified = loop.run_in_executor(None, classify_timed, messages, model)
                classifying.append((batch, classified, model.version, started))
                while len(classifying) >= batches_at_once(settings, model):
                    await finish_oldest()
        finally:
            await stop_reading(upcoming, source)
            try:
                while classifying:  # classified already: store and send them, in order
                    await finish_oldest()
            finally:
                if writing is not None:
                    await asyncio.shield(writing)

    return classify
