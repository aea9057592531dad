"""Time, injected: every scheduler, store and poller takes a clock instead of reading one.

``Clock``      wall time, an aware UTC datetime: what is written to the database and messages.
``Monotonic``  seconds that only move forward: what rate limits and timers measure.
Tests pass fakes of either; production passes ``utc_now`` / ``time.monotonic``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (never a naive one)."""
    return datetime.now(UTC)
