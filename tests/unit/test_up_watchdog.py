"""cli.up's watchdogs. broker_watchdog: a dead embedded broker is restarted, recovery runs
until it succeeds, the Kafka children are started again (even when recovery failed), the API
is left alone. stall_watchdog: workers whose group leaves records waiting without moving its
committed offsets are restarted, and only then."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from broker.lag import GroupPosition, StallDetector
from cli import up
from core.settings import Settings
from ingest.recovery import Recovered


class FakeBroker:
    bootstrap_servers = "127.0.0.1:1"

    def __init__(self) -> None:
        self.up, self.restarts = True, 0

    def alive(self) -> bool:
        return self.up

    def restart(self) -> FakeBroker:
        self.up, self.restarts = True, self.restarts + 1
        return self


@pytest.fixture
def children() -> Iterator[list[up.Child]]:
    made = [up.Child("worker-1", ["sleep", "60"]), up.Child("api", ["sleep", "60"])]
    for child in made:
        child.process = subprocess.Popen(child.argv)
    yield made
    for child in made:
        if child.process is not None and child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def test_recovery_is_retried_and_kafka_children_start_again(
    children: list[up.Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: list[Exception | Recovered] = [RuntimeError("database blip"), Recovered(3, 2)]

    async def recover(settings: Settings, database_url: str) -> Recovered:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(up, "recover_after_broker_loss", recover)
    broker = FakeBroker()
    watch = up.broker_watchdog(broker, Settings(), "postgresql://unused/db")  # type: ignore[arg-type]
    worker, api = children
    api_process = api.process

    watch(children)  # all well: nothing happens
    assert broker.restarts == 0 and worker.process is not None

    broker.up = False
    with pytest.raises(RuntimeError, match="database blip"):
        watch(children)  # restarted, recovery failed
    assert broker.restarts == 1
    assert worker.process is None and not worker.done and worker.next_start == 0.0
    assert api.process is api_process and api_process is not None and api_process.poll() is None

    watch(children)  # the broker is alive, but recovery is still owed: it runs again
    assert outcomes == [] and broker.restarts == 1
    watch(children)  # done: nothing more
    assert outcomes == []


def test_workers_divide_the_cores_and_get_their_own_metrics_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(up, "available_cpus", lambda: 8)
    settings = Settings(worker_metrics_port=9101)
    envs = [up.worker_env(settings, i, 3) for i in range(3)]
    assert [e["ARXIV_STREAM_CPU_THREADS"] for e in envs] == ["2", "2", "2"]  # 8 // 3
    assert [e["ARXIV_STREAM_WORKER_METRICS_PORT"] for e in envs] == ["9101", "9102", "9103"]
    assert (
        up.worker_env(Settings(worker_metrics_port=0), 1, 4)["ARXIV_STREAM_WORKER_METRICS_PORT"]
        == "0"
    )
    monkeypatch.setattr(up, "available_cpus", lambda: 2)
    assert up.worker_env(settings, 0, 4)["ARXIV_STREAM_CPU_THREADS"] == "1"  # at least one
    pinned = Settings(cpu_threads=3)
    assert up.worker_env(pinned, 0, 2)["ARXIV_STREAM_CPU_THREADS"] == "3"  # a setting wins


def test_the_stall_detector_wants_records_waiting_and_offsets_still() -> None:
    detector = StallDetector(after_s=60)
    waiting = GroupPosition(committed=100, waiting=True)
    assert not detector.observe(waiting, now=0)
    assert not detector.observe(waiting, now=59)
    assert detector.observe(waiting, now=60)  # 60 s, records waiting, offsets still
    assert not detector.observe(GroupPosition(committed=164, waiting=True), now=61)  # moved
    assert not detector.observe(GroupPosition(committed=164, waiting=True), now=100)
    assert not detector.observe(GroupPosition(committed=164, waiting=False), now=200)  # idle
    assert not detector.observe(GroupPosition(committed=164, waiting=True), now=201)
    assert not detector.observe(None, now=300)  # broker away: unknown, not stalled
    assert not detector.observe(GroupPosition(committed=164, waiting=True), now=301)
    assert detector.observe(GroupPosition(committed=164, waiting=True), now=361)
    detector.restart(now=362)
    assert not detector.observe(GroupPosition(committed=164, waiting=True), now=400)


def test_stalled_workers_are_restarted_and_given_time_again(children: list[up.Child]) -> None:
    positions: list[GroupPosition | None] = [GroupPosition(committed=5, waiting=True)]
    clock = {"now": 1000.0}
    watch = up.stall_watchdog(
        Settings(worker_stall_s=60), lambda: positions[-1], clock=lambda: clock["now"]
    )
    worker, api = children
    first, api_process = worker.process, api.process
    for step in range(0, 60, 15):  # checked every 15 s: still within the allowance
        clock["now"] = 1000.0 + step
        watch(children)
    assert worker.process is first
    clock["now"] = 1060.0
    watch(children)  # 60 s without movement while records wait: restarted
    assert worker.process is None and first is not None and first.poll() is not None
    assert api.process is api_process and api_process is not None and api_process.poll() is None
    worker.process = subprocess.Popen(["sleep", "60"])  # what the supervisor does next
    for step in range(15, 75, 15):  # the new worker gets its own 60 s
        clock["now"] = 1060.0 + step
        watch(children)
        assert worker.process is not None
    positions.append(GroupPosition(committed=5, waiting=False))  # caught up: never a stall
    for step in range(75, 300, 15):
        clock["now"] = 1060.0 + step
        watch(children)
        assert worker.process is not None
