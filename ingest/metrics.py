"""The ingester's Prometheus metrics, on loopback at ``INGESTER_METRICS_PORT`` (0: off).
Names are listed in the README."""

from __future__ import annotations

from prometheus_client import Counter

SEEN = Counter("arxiv_stream_ingest_seen_papers_total", "Papers read from a feed or snapshot")
PUBLISHED = Counter(
    "arxiv_stream_ingest_published_papers_total", "New or updated papers published to Kafka"
)
REPUBLISHED = Counter(
    "arxiv_stream_ingest_republished_papers_total", "Papers published again (lost by the stream)"
)
DELETED = Counter("arxiv_stream_ingest_deleted_papers_total", "Stored papers arXiv deleted")
POLL_FAILURES = Counter("arxiv_stream_ingest_poll_failures_total", "Polls that failed")
