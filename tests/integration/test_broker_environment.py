"""Issue 8 (9): the embedded broker gets a bare environment; no database URL or password
reaches its process (readable by its user in /proc/<pid>/environ)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


def test_no_secret_reaches_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "postgresql://user:s3cret-pw@db.example:5432/arxiv"
    monkeypatch.setenv("DATABASE_URL", secret)
    monkeypatch.setenv("ARXIV_STREAM_DATABASE_URL", secret)
    monkeypatch.setenv("ARXIV_STREAM_KAFKA_SASL_PASSWORD", "another-s3cret")
    with EmbeddedKafka() as broker:
        process = broker._process
        assert process is not None
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
    assert b"s3cret" not in environ and b"DATABASE_URL" not in environ
    assert b"PATH=" in environ  # what it needs is still there
