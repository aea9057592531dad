"""cli.up.broker_watchdog: a dead embedded broker is restarted, recovery runs until it
succeeds, the Kafka children are started again (even when recovery failed), the API is
left alone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

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
