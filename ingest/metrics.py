"""The ingester's Prometheus metrics, on loopback at ``INGESTER_METRICS_PORT`` (0: off).
Names are listed in the README."""

from __future__ import annotations

import logging

from prometheus_client import Counter, start_http_server

log = logging.getLogger(__name__)

SEEN = Counter("arxiv_stream_ingest_seen_papers_total", "Papers read from a feed or snapshot")
PUBLISHED = Counter(
    "arxiv_stream_ingest_published_papers_total", "New or updated papers published to Kafka"
)
REPUBLISHED = Counter(
    "arxiv_stream_ingest_republished_papers_total", "Papers published again (lost by the stream)"
)
DELETED = Counter("arxiv_stream_ingest_deleted_papers_total", "Stored papers arXiv deleted")
POLL_FAILURES = Counter("arxiv_stream_ingest_poll_failures_total", "Polls that failed")


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the metrics on 127.0.0.1:``port``; 0 turns them off (a busy port is logged)."""
    if port <= 0:
        return
    try:
        start_http_server(port, addr=host)
        log.info("metrics at http://%s:%d/metrics", host, port)
    except OSError as exc:
        log.warning("metrics port %d unavailable (%s): metrics off", port, exc)
