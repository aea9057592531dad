"""Which PostgreSQL and which Kafka a command talks to, starting embedded ones if needed.

Resolution order, for each of the two:
 1. configured (``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``, or the ARXIV_STREAM_ forms);
 2. the embedded one a running ``arxiv-stream up`` started (it leaves a state file in the
    data directory, so ``db url``, ``tail`` and ``ingest`` in a second terminal find it);
 3. PostgreSQL only: start the embedded server on ``<data_dir>/pgdata`` (labels survive);
    Kafka: start a Tansu broker when the caller asks for one (``up``), else a clear error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker.embedded import EmbeddedKafka
from core.errors import ConfigError
from core.settings import Settings
from db.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

STATE_FILE = "run/services.json"


@dataclass(frozen=True)
class Services:
    database_url: str
    kafka_bootstrap: str | None
    broker: EmbeddedKafka | None = None
    """The embedded broker started here (``up`` watches it), None when configured."""


def _state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_running_state(settings: Settings) -> dict[str, str] | None:
    """Services published by a live ``up`` (a stale file from a crash is ignored)."""
    path = _state_path(settings)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(state.get("pid", -1))):
        return None
    return {k: str(v) for k, v in state.items()}


def write_running_state(settings: Settings, services: Services) -> Path:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "database_url": services.database_url,
                "kafka_bootstrap": services.kafka_bootstrap or "",
            }
        )
    )
    path.chmod(0o600)  # holds a database URL
    return path


NO_BROKER = (
    "no Kafka broker: start `arxiv-stream up` in another terminal, or set KAFKA_BOOTSTRAP_SERVERS"
)


def running_kafka(settings: Settings) -> str:
    """The configured broker, else the one a live ``up`` started; never starts anything
    (for commands that need only Kafka, such as ``tail``)."""
    running = read_running_state(settings)
    kafka = settings.kafka_bootstrap_servers or (running or {}).get("kafka_bootstrap")
    if not kafka:
        raise ConfigError(NO_BROKER)
    return kafka


@contextmanager
def services(
    settings: Settings, *, need_kafka: bool, start_kafka: bool = False
) -> Iterator[Services]:
    """Yield the URLs to use; embedded servers started here are stopped on exit
    (Kafka first: Tansu waits for its clients, PostgreSQL last)."""
    running = read_running_state(settings)
    with ExitStack() as stack:
        database_url = settings.database_url_value()
        if database_url is None and running:
            database_url = running["database_url"]
        if database_url is None:
            pg = stack.enter_context(EmbeddedPostgres(settings.pgdata_dir))
            database_url = pg.url
        kafka = settings.kafka_bootstrap_servers
        broker: EmbeddedKafka | None = None
        if kafka is None and running and running.get("kafka_bootstrap"):
            kafka = running["kafka_bootstrap"]
        if kafka is None and need_kafka:
            if not start_kafka:
                raise ConfigError(NO_BROKER)
            log_dir = settings.data_dir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            broker = stack.enter_context(EmbeddedKafka(log_path=log_dir / "tansu.log"))
            kafka = broker.bootstrap_servers
        yield Services(database_url=database_url, kafka_bootstrap=kafka, broker=broker)
