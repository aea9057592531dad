"""The API's Prometheus metrics (served at /metrics). Names are listed in the README."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "arxiv_stream_api_requests_total",
    "API requests by route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "arxiv_stream_api_request_seconds",
    "API request latency by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PREDICTED = Counter("arxiv_stream_api_predicted_papers_total", "Papers classified by the API")


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, started: float) -> None:
    """``route`` is the route's template (bounded); a method outside the standard set is
    ``other``, so no client can create new series at will."""
    method = method if method in METHODS else "other"
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(time.perf_counter() - started)
