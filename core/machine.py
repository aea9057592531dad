"""What this process may use of the machine, without importing torch."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

SERIAL_BLAS_ROWS = 4096
"""Up to this many rows, the classifier heads' matrix products run on one BLAS thread."""


def available_cpus() -> int:
    """CPU cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class _SerialBlas:
    """One BLAS thread while any caller is inside (counted, so two threads scoring at once
    do not restore the other's threads under it); the previous count once the last leaves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: Any = None  # scans the loaded libraries once, on first use
        self._limiter: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._limiter.restore_original_limits()


_serial_blas = _SerialBlas()


def serial_blas(rows: int) -> contextlib.AbstractContextManager[Any]:
    """Within it, BLAS runs on one thread where ``rows`` (the rows of the batch being
    scored) is at most ``SERIAL_BLAS_ROWS``; else as it was. The libraries are those loaded
    when it is first used: numpy's OpenBLAS, and scipy's once scikit-learn has loaded it.

    Why: after a threaded call OpenBLAS keeps its helper threads busy-waiting for the next
    one. Beside the embedder, whose own threads have every core, that spin took CPU the
    embedder needed: 5-8% of the embedder's CPU time in per-thread profiles of
    ``predict_texts`` and of the bare worker over the real feed (batches of 64, 2 cores,
    2026-12-02). A second BLAS thread only helps when a core is
    free, which beside the embedder it is not (even for a kNN blend's product with its
    memory, ~0.5 G multiply-adds per 64 rows). Large batches (an evaluation over a test
    split) keep their threads: nothing else runs beside them.
    """
    if rows > SERIAL_BLAS_ROWS:
        return contextlib.nullcontext()
    return _serial_blas()
