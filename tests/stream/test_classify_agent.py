"""The classification agent's decisions, end to end in one process (tests/stream/harness.py):
a real Faust agent and model holder between an in-memory broker, database and model.

- a good batch: decoded, classified by one model call, stored in one transaction, one
  message per paper on the classified topic, carrying the model version;
- a replayed batch (at-least-once redelivery): rows overwritten, nothing sent twice;
- undecodable, oversize and schema-invalid messages: dead letters ``decode`` with the
  reason; the rest of the batch, and the next batches, flow on;
- a paper PostgreSQL refuses for good: dead letter ``store``; its neighbours are stored;
- PostgreSQL unreachable: the write is retried with backoff, nothing is dead-lettered;
- a promotion: the next batch is labelled by the new version, no batch by two;
- a model that takes two batches at once: the next batch is classified while the one
  before it is still in the model, and batches are still stored and sent in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading

import orjson
import pytest

from core.schemas import MAX_MESSAGE_BYTES
from tests.stream.harness import (
    TOPIC_DEAD,
    TOPIC_PAPERS,
    FakeDatabase,
    Registry,
    message,
    paper,
    running_classifier,
)

IDS = [f"2411.{n:05d}" for n in range(1, 20)]


async def test_a_good_batch_is_stored_once_and_published_with_the_model_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    papers = [paper(i) for i in IDS[:3]]
    async with running_classifier(monkeypatch, batch_size=3) as run:
        await run.put(*map(message, papers))
        await run.batches(1)

        # One model call for the batch, one transaction for its papers and labels.
        assert run.registry.calls == [("m1", [p.text for p in papers])]
        assert run.db.label_writes == [[(i, 1, "m1") for i in IDS[:3]]]
        assert [p.arxiv_id for p in run.db.commits[0].papers] == IDS[:3]
        # One message per paper, keyed by its id, carrying the model version.
        sent = run.classified()
        assert [(key, c.arxiv_id, c.version) for key, c in sent] == [
            (i.encode(), i, 1) for i in IDS[:3]
        ]
        assert {(c.model_version, c.category.label, c.domain.label) for _, c in sent} == {
            ("m1", "cs.LG", "Computer Science")
        }
        assert all(c.agrees_with_declared for _, c in sent)
        # Delivered, then marked so stream.delivery does not send them again.
        assert run.db.published == {(i, 1, "m1") for i in IDS[:3]}
        assert run.dead_letters() == []
        assert run.sleeps == []


async def test_a_replayed_batch_is_written_again_but_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [message(paper(i)) for i in IDS[:3]]
    async with running_classifier(monkeypatch, batch_size=3) as run:
        await run.put(*batch)
        await run.batches(1)
        await run.put(*batch)  # Kafka redelivers after a crash before the offset commit
        await run.batches(2)

        assert len(run.db.label_writes) == 2  # the upsert ran again ...
        assert sorted(run.db.labels) == [(i, 1, "m1") for i in IDS[:3]]  # ... one row per key
        assert len(run.classified()) == 3  # each label was sent once
        assert run.dead_letters() == []


async def test_bad_messages_are_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = [paper(IDS[0]), paper(IDS[1])]
    as_dict = paper("2411.99999").model_dump(mode="json", by_alias=True)
    bad = {
        "not-json": b"\xff\xfe this is not JSON",
        "oversize": b'{"pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}',
        "huge-not-json": b"\xff" * (20 * MAX_MESSAGE_BYTES),  # 20 MB: its dead letter must fit
        "long-title": orjson.dumps({**as_dict, "title": "t" * 2_000_000}),  # 2 MB title
        "invalid": orjson.dumps({**as_dict, "version": 0}),  # JSON, but not a valid Paper
        "future": orjson.dumps({**as_dict, "schema": "arxiv-stream.paper/9"}),  # unknown schema
    }
    batch = [
        message(good[0]),
        *((key, value) for key, value in bad.items()),
        message(good[1]),
    ]
    async with running_classifier(monkeypatch, batch_size=len(batch)) as run:
        await run.put(*batch)
        await run.batches(1)

        dead = {key: letter for key, letter in run.dead_letters()}
        assert set(dead) == {key.encode() for key in bad}
        for key, value in bad.items():
            letter = dead[key.encode()]
            assert (letter.reason, letter.key, letter.source_topic) == ("decode", key, TOPIC_PAPERS)
            assert letter.payload_bytes == len(value)
            assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
        assert "1,000,000-byte limit" in dead[b"oversize"].error
        assert dead[b"oversize"].payload_truncated
        # Every dead letter fits the producer's 1 MB limit, whatever it carries (issue 8 (1)).
        sent = dict(run.producer.on(TOPIC_DEAD))
        assert max(len(value) for value in sent.values()) < MAX_MESSAGE_BYTES
        assert dead[b"huge-not-json"].payload_bytes == 20 * MAX_MESSAGE_BYTES
        assert "version" in dead[b"invalid"].error
        assert "arxiv-stream.paper/9" in dead[b"future"].error
        # The good papers around them are classified, stored together and sent.
        assert run.registry.calls == [("m1", [p.text for p in good])]
        assert run.db.label_writes == [[(IDS[0], 1, "m1"), (IDS[1], 1, "m1")]]
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:2]

        # The agent is still consuming: the next batch flows as usual.
        after = [message(paper(i)) for i in IDS[2 : 2 + len(batch)]]
        await run.put(*after)
        await run.batches(2)
        assert [c.arxiv_id for _, c in run.classified()] == IDS[: 2 + len(batch)]
        assert len(run.dead_letters()) == len(bad)


async def test_a_paper_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [message(paper(i)) for i in IDS[:3]]
    db = FakeDatabase(refuse={IDS[1]})
    async with running_classifier(monkeypatch, batch_size=3, db=db) as run:
        await run.put(*batch)
        await run.batches(1)

        # The batch's transaction failed as a whole, so it was written paper by paper.
        assert db.label_writes == [[(IDS[0], 1, "m1")], [(IDS[2], 1, "m1")]]
        assert sorted(db.papers) == [IDS[0], IDS[2]]
        assert [c.arxiv_id for _, c in run.classified()] == [IDS[0], IDS[2]]
        assert db.published == {(IDS[0], 1, "m1"), (IDS[2], 1, "m1")}
        [(key, letter)] = run.dead_letters()
        assert (key, letter.reason, letter.key) == (IDS[1].encode(), "store", IDS[1])
        assert "invalid byte sequence" in letter.error
        assert letter.payload == batch[1][1].decode()  # the original message, to replay
        assert run.sleeps == []  # a refusal is not an outage: no retry


async def test_an_unreachable_database_is_retried_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [message(paper(i)) for i in IDS[:3]]
    db = FakeDatabase(outages=3)
    async with running_classifier(monkeypatch, batch_size=3, db=db) as run:
        await run.put(*batch)
        await run.batches(1)

        assert run.sleeps == [1.0, 2.0, 4.0]  # backoff while the server is away
        assert db.begins == 3 + 2  # three failed attempts, the write, the published mark
        assert db.label_writes == [[(i, 1, "m1") for i in IDS[:3]]]  # still one write
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:3]
        assert run.dead_letters() == []


async def test_a_promotion_is_picked_up_between_batches_never_within_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def promote_m2_during_the_first_batch(registry: Registry) -> None:
        registry.promoted = "m2"

    registry = Registry(promoted="m1", during_predict=promote_m2_during_the_first_batch)
    first, second, third = IDS[0:3], IDS[3:6], IDS[6:9]
    async with running_classifier(monkeypatch, batch_size=3, registry=registry) as run:
        await run.put(*(message(paper(i)) for i in first + second))  # two batches queued
        await run.batches(2)
        registry.during_predict = None
        registry.promoted = "m3"  # promoted while the agent waits for a batch
        await run.put(*(message(paper(i)) for i in third))
        await run.batches(3)

        # Each batch is classified by one model: the one current when the batch began.
        assert [(version, len(texts)) for version, texts in registry.calls] == [
            ("m1", 3),
            ("m2", 3),
            ("m3", 3),
        ]
        assert run.db.label_writes == [
            [(i, 1, "m1") for i in first],
            [(i, 1, "m2") for i in second],
            [(i, 1, "m3") for i in third],
        ]
        versions = {c.arxiv_id: c.model_version for _, c in run.classified()}
        assert versions == {
            **dict.fromkeys(first, "m1"),
            **dict.fromkeys(second, "m2"),
            **dict.fromkeys(third, "m3"),
        }


async def test_a_lone_paper_goes_when_the_stream_is_idle_not_after_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch of 64 with a 30 s window: one paper alone is labelled within ``idle_s`` of
    the stream going quiet (``run.batches`` gives up after 10 s)."""
    async with running_classifier(monkeypatch, batch_size=64, idle_s=0.05) as run:
        await run.put(message(paper(IDS[0])))
        await run.batches(1)
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:1]
        await run.put(*(message(paper(i)) for i in IDS[1:4]))
        await run.batches(2)
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:4]


async def test_a_nul_in_a_paper_is_dropped_and_the_paper_labelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 8 (2): PostgreSQL text cannot hold U+0000; such a title halted classification."""
    nul = paper(IDS[0]).model_dump(mode="json", by_alias=True) | {"title": "Zero\x00 byte"}
    async with running_classifier(monkeypatch, batch_size=2) as run:
        await run.put((IDS[0], orjson.dumps(nul)), message(paper(IDS[1])))
        await run.batches(1)
        assert run.dead_letters() == []
        ((_, first), _) = run.classified()
        assert first.title == "Zero byte" and "\x00" not in first.title
        assert run.db.label_writes == [[(IDS[0], 1, "m1"), (IDS[1], 1, "m1")]]


async def test_two_batches_in_the_model_at_once_are_still_stored_and_sent_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``concurrent_batches = 2`` (OpenVINO) the second batch's model call runs while
    the first one's is still going, and may return first: the first batch is still written
    and sent before the second."""
    second_returned = threading.Event()
    waited: list[bool] = []

    def first_waits_for_the_second(registry: Registry) -> None:
        if len(registry.calls) == 1:  # the first batch's call
            waited.append(second_returned.wait(timeout=5.0))

    def note_the_second(registry: Registry) -> None:
        if len(registry.calls) == 2 and not second_returned.is_set() and waited == []:
            second_returned.set()

    registry = Registry(
        promoted="m1",
        during_predict=first_waits_for_the_second,
        after_predict=note_the_second,
        concurrent_batches=2,
    )
    first, second, third = IDS[0:3], IDS[3:6], IDS[6:9]
    async with running_classifier(monkeypatch, batch_size=3, registry=registry) as run:
        await run.put(*(message(paper(i)) for i in first + second + third))
        await run.batches(3)
        assert waited == [True]  # the second batch was classified during the first
        assert run.db.label_writes == [
            [(i, 1, "m1") for i in ids] for ids in (first, second, third)
        ]
        assert [c.arxiv_id for _, c in run.classified()] == first + second + third
        assert run.dead_letters() == []


async def test_a_lone_paper_goes_at_once_when_batches_overlap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Overlap never holds a classified batch back waiting for the next one to fill."""
    registry = Registry(promoted="m1", concurrent_batches=2)
    async with running_classifier(
        monkeypatch, batch_size=64, idle_s=0.05, registry=registry
    ) as run:
        await run.put(message(paper(IDS[0])))
        await run.batches(1)
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:1]
        await run.put(message(paper(IDS[1])))
        await run.batches(2)
        assert [c.arxiv_id for _, c in run.classified()] == IDS[:2]


async def test_batches_in_the_model_when_the_agent_stops_are_finished_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent stops (a rebalance, a shutdown) while the first batch is still in the model
    and the second is done: both are written and sent, the first one first. Neither is
    dropped, and the second is never acked past an unfinished first."""
    release = threading.Event()

    def first_is_slow(registry: Registry) -> None:
        if len(registry.calls) == 1:
            release.wait(timeout=5.0)

    registry = Registry(promoted="m1", during_predict=first_is_slow, concurrent_batches=2)
    first, second = IDS[0:3], IDS[3:6]
    async with running_classifier(monkeypatch, batch_size=3, registry=registry) as run:
        await run.put(*(message(paper(i)) for i in first + second))
        for _ in range(1000):  # until both batches are in the model
            if len(registry.calls) == 2:
                break
            await asyncio.sleep(0.005)
        assert len(registry.calls) == 2 and run.db.label_writes == []
        threading.Timer(0.2, release.set).start()  # the first returns while the agent stops
    assert run.db.label_writes == [[(i, 1, "m1") for i in ids] for ids in (first, second)]
    assert [c.arxiv_id for _, c in run.classified()] == first + second
