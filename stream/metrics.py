"""A worker's Prometheus metrics, served on loopback at ``WORKER_METRICS_PORT`` (0: off).
Names are listed in the README."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, Info

CLASSIFIED = Counter("arxiv_stream_worker_classified_papers_total", "Papers labelled and stored")
DEAD_LETTERS = Counter(
    "arxiv_stream_worker_dead_letters_total", "Messages dead-lettered, by reason", ["reason"]
)
DB_RETRIES = Counter(
    "arxiv_stream_worker_db_write_retries_total", "Batch writes retried (database unreachable)"
)
SENT = Counter(
    "arxiv_stream_worker_sent_messages_total", "Messages acknowledged on classified-papers"
)
BATCH_SIZE = Histogram(
    "arxiv_stream_worker_batch_size",
    "Messages per agent batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_SECONDS = Histogram(
    "arxiv_stream_worker_batch_seconds",
    "One batch end to end: classify, store, send",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
MODEL_SECONDS = Histogram(
    "arxiv_stream_worker_model_seconds",
    "Embedding and classification of one batch (the model's share of a batch)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
MODEL = Info("arxiv_stream_worker_model", "The model version in use")
