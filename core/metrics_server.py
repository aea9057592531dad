"""Serve this process's Prometheus metrics (the worker's and the ingester's)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the default registry on ``host:port``; 0 turns it off. A port in use is
    logged, not fatal: the process's work matters more than its metrics."""
    if port <= 0:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
        log.info("metrics at http://%s:%d/metrics", host, port)
    except OSError as exc:
        log.warning("metrics port %d unavailable (%s): metrics off", port, exc)
