"""Where a consumer group stands on a topic, read from the broker: its committed offsets, and
whether any record waits past them. For the supervisor's stall watchdog.

Whether records wait is found by fetching past the committed offsets, not from the
partitions' end offsets: Tansu answers ListOffsets wrongly after multi-record batches
(PLATFORM.md), and a fetch is right on every broker. Nothing here joins the group or
commits anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from broker.client import connection_options, make_consumer
from core.settings import Settings


@dataclass(frozen=True)
class GroupPosition:
    committed: int
    """Sum over the topic's partitions of the group's committed offsets (0 where none)."""
    waiting: bool
    """Whether at least one record lies past the committed offsets."""


async def group_position(
    settings: Settings, group: str, topic: str, *, probe_ms: int = 1000
) -> GroupPosition:
    """Where ``group`` stands on ``topic``. Raises what the client raises when the broker is
    away (callers treat that as 'unknown', never as 'stalled')."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = [
            TopicPartition(topic, p["partition"])
            for found in described
            if found["topic"] == topic
            for p in found["partitions"]
        ]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    offsets = {tp: max(0, meta.offset) for tp, meta in committed.items()}
    if not partitions:
        return GroupPosition(committed=0, waiting=False)
    consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, offsets.get(tp, 0))
        found = await consumer.getmany(timeout_ms=probe_ms, max_records=1)
    finally:
        await consumer.stop()
    return GroupPosition(
        committed=sum(offsets.values()), waiting=any(records for records in found.values())
    )


@dataclass
class StallDetector:
    """Says a consumer group is stalled: records wait past its committed offsets, and those
    offsets have not moved for ``after_s``. A group that is caught up, or moving, or whose
    position is unknown (broker away) is not stalled. Times are the caller's clock."""

    after_s: float
    _committed: int | None = None
    _since: float = 0.0

    def observe(self, position: GroupPosition | None, now: float) -> bool:
        if position is None or not position.waiting or position.committed != self._committed:
            self._committed = None if position is None else position.committed
            self._since = now
            return False
        return now - self._since >= self.after_s

    def restart(self, now: float) -> None:
        """The group's members were started again: give them ``after_s`` from ``now``."""
        self._committed, self._since = None, now
