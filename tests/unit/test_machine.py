"""core.machine: one BLAS thread for small products, counted across threads."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from core.machine import SERIAL_BLAS_ROWS, serial_blas


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def two_blas_threads():
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    if not blas_threads():
        pytest.skip("no BLAS library found by threadpoolctl here")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_small_products_get_one_thread_and_large_ones_keep_theirs() -> None:
    with serial_blas(64):
        assert blas_threads() == {1}
    assert blas_threads() == {2}
    with serial_blas(SERIAL_BLAS_ROWS + 1):
        assert blas_threads() == {2}


def test_overlapping_callers_keep_one_thread_until_the_last_leaves() -> None:
    """Two threads scoring at once: the first to leave must not restore the threads under
    the second."""
    first, second = serial_blas(64), serial_blas(64)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert blas_threads() == {1}
    second.__exit__(None, None, None)
    assert blas_threads() == {2}
