"""The ingest loop's schedule and failure handling, on an injected sleep."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import FeedParseError, StorageError
from ingest.service import IngestStats, run_forever


class Republisher:
    def __init__(self, fail_on: set[int]) -> None:
        self.calls = 0
        self.fail_on = fail_on

    async def republish_unlabelled(self) -> int:
        self.calls += 1
        if self.calls in self.fail_on:
            raise StorageError("database down")
        return 0


async def test_polls_on_schedule_and_survives_bad_feeds_and_outages() -> None:
    outcomes: list[Exception | None] = [FeedParseError("truncated"), None, StorageError("down")]
    polls: list[int] = []
    sleeps: list[float] = []

    async def poll() -> IngestStats:
        polls.append(len(sleeps))
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return IngestStats(seen=3, published=1)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    republisher = Republisher(fail_on={2})
    await run_forever(poll, republisher, interval_s=30, republish_every_s=10, sleep=sleep, rounds=3)
    assert polls == [0, 3, 6]  # at start, then every 30 s of 10 s steps
    assert republisher.calls == 7 and sleeps == [10.0] * 7  # republish between polls


async def test_unexpected_errors_still_surface() -> None:
    async def poll() -> IngestStats:
        raise RuntimeError("bug")

    async def sleep(seconds: float) -> None:
        return None

    with pytest.raises(RuntimeError):
        await run_forever(
            poll, Republisher(set()), interval_s=1, republish_every_s=1, sleep=sleep, rounds=1
        )


async def test_a_saved_feed_over_the_download_cap_is_refused_unread(tmp_path: Path) -> None:
    """Issue 8 (7): the 50 MB cap of a download holds for ``--file`` too (a sparse file:
    nothing is read, nothing is stored)."""
    from core.errors import FetchError
    from core.settings import Settings
    from ingest.http import MAX_RESPONSE_BYTES
    from ingest.sources import FeedSource, make_poll

    giant = tmp_path / "giant.xml"
    with giant.open("wb") as handle:
        handle.truncate(MAX_RESPONSE_BYTES + 1)
    poll = make_poll(Settings(), None, FeedSource("rss", replay=giant))  # type: ignore[arg-type]
    with pytest.raises(FetchError, match="over the 50,000,000-byte limit of a feed"):
        await poll()
