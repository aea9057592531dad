"""A subscriber to ``classified-papers`` (``arxiv-stream tail``): a short example of
reading the topic that users can copy. One human line per paper, or the JSON as sent."""

from __future__ import annotations

import sys
import time
import uuid

import orjson
from aiokafka.errors import KafkaError

from broker.client import make_consumer, topic_exists
from core.errors import ConfigError, MessageError
from core.schemas import decode_classified
from core.settings import Settings


def format_line(value: bytes) -> str:
    """One human line per classified paper."""
    try:
        msg = decode_classified(value)
    except MessageError:
        return value.decode("utf-8", errors="replace")
    mark = (
        ""
        if msg.agrees_with_declared in (None, True)
        else "  (declared " + (msg.categories[0] if msg.categories else "?") + ")"
    )
    return (
        f"{msg.arxiv_id}v{msg.version}  {msg.domain.label:<16} {msg.category.label:<18} "
        f"{msg.category.score:.2f}  {msg.title[:70]}{mark}"
    )


JOIN_WAIT_S = 30.0


def _render(value: bytes, as_json: bool) -> str:
    if not as_json:
        return format_line(value)
    try:  # compact, one message per line, whatever the producer's formatting
        return orjson.dumps(orjson.loads(value)).decode()
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")


async def tail_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    as_json: bool,
    idle_exit_s: float | None,
) -> int:
    try:
        exists = await topic_exists(settings, topic)
    except KafkaError as exc:
        where = settings.kafka_bootstrap_servers
        raise ConfigError(f"cannot reach the Kafka broker at {where}: {exc}") from None
    if not exists:
        raise ConfigError(f"no topic {topic!r} on the broker (see `--topic`)")
    # A private group id per run: tail never steals partitions from anyone, and reading from
    # the beginning or the end is decided by auto_offset_reset alone.
    consumer = make_consumer(
        settings,
        topic,
        group_id=f"arxiv-stream-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    started, count = time.monotonic(), 0
    try:
        while limit is None or count < limit:
            timeout_ms = int((idle_exit_s or 1.0) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            # Idle counts only once partitions are assigned: the group join itself can take
            # seconds (Tansu holds joins for half the session timeout). A topic that never
            # gets assigned (it does not exist) still ends after JOIN_WAIT_S.
            joined = bool(consumer.assignment()) or time.monotonic() - started > JOIN_WAIT_S
            if not batch and idle_exit_s is not None and joined:
                break
            records = [record for part in batch.values() for record in part]
            for record in records[: None if limit is None else limit - count]:
                print(_render(record.value or b"", as_json))
                count += 1
            sys.stdout.flush()
    finally:
        await consumer.stop()
    return count
