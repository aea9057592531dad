"""``arxiv-stream up``: the whole product in one supervised process tree.

embedded PostgreSQL + Tansu (unless configured) -> migrations -> model (train one with
--snapshot if none is promoted) -> worker process + ingester process, restarted with
backoff if they die -> progress in the log -> Ctrl-C stops children, broker, database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from api.server import page_url
from broker.client import ensure_topics
from broker.embedded import EmbeddedKafka
from broker.lag import GroupPosition, StallDetector, group_position
from cli.argtypes import positive_int
from cli.services import services, write_running_state
from core.clock import utc_now
from core.errors import ConfigError, ModelNotFoundError
from core.machine import available_cpus
from core.settings import Settings
from db import migrate, repository
from db.engine import run_sync
from ingest.recovery import recover_after_broker_loss
from lifecycle.registry import NO_MODEL_HELP, Registry

log = logging.getLogger("arxiv_stream.up")

PROGRESS_EVERY_S = 10.0
MAX_BACKOFF_S = 60.0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run everything: services, worker, ingester")
    up.add_argument(
        "--replay",
        type=Path,
        default=None,
        help="feed a saved RSS or OAI-PMH response instead of live arXiv",
    )
    up.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="Kaggle-format file to train a model from when none is promoted",
    )
    up.add_argument("--source", choices=["rss", "oai"], default=None, help="live feed to poll")
    up.add_argument(
        "--workers", type=positive_int, default=1, help="classification worker processes"
    )
    up.add_argument("--no-api", action="store_true", help="do not start the HTTP API and page")
    up.set_defaults(handler=_up)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    done: bool = False
    """A child that exited 0 on purpose is not restarted."""
    started_at: float = field(default=0.0)
    env: dict[str, str] = field(default_factory=dict)
    """Set for this child only, over the shared environment."""


def replay_source(path: Path) -> str:
    """``rss`` or ``oai``, from the first bytes of a saved response; anything else (an HTML
    page, a missing file) is refused here, before any child starts and retries it forever."""
    if not path.is_file():
        raise ConfigError(f"--replay {path}: no such file")
    head = path.read_bytes()[:4096].lower()
    if b"<rss" in head:
        return "rss"
    if b"<oai-pmh" in head:
        return "oai"
    raise ConfigError(f"--replay {path}: neither an RSS feed nor an OAI-PMH response")


def child_commands(args: argparse.Namespace, settings: Settings) -> list[Child]:
    base = [sys.executable, "-m", "cli.main"]
    children = [
        Child(f"worker-{i + 1}", [*base, "worker"], env=worker_env(settings, i, args.workers))
        for i in range(args.workers)
    ]
    if args.replay is not None:
        source = replay_source(args.replay)
        ingest = [*base, "ingest", source, "--file", str(args.replay.resolve()), "--loop"]
    else:
        ingest = [*base, "ingest", args.source or settings.ingest_source, "--loop"]
    children.append(Child("ingester", ingest))
    if not args.no_api:
        children.append(Child("api", [*base, "serve"]))
    return children


def worker_env(settings: Settings, index: int, workers: int) -> dict[str, str]:
    """Worker ``index`` of ``workers``: its own metrics port (WORKER_METRICS_PORT + index)
    and its share of the cores (CPU_THREADS: cores / workers, at least 1)."""
    port = settings.worker_metrics_port
    threads = settings.cpu_threads or max(1, available_cpus() // workers)
    return {
        "ARXIV_STREAM_WORKER_METRICS_PORT": str(port + index if port > 0 else 0),
        "ARXIV_STREAM_CPU_THREADS": str(threads),
    }


def _start(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(child.argv, env={**env, **child.env})
    child.started_at = time.monotonic()
    log.info("started %s (pid %d)", child.name, child.process.pid)


def _stop_all(children: list[Child], grace_s: float = 15.0) -> None:
    for child in children:
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", child.name, grace_s)
            child.process.kill()
            child.process.wait()


def _progress(database_url: str) -> str:
    counts = run_sync(database_url, repository.progress_counts)
    return ", ".join(f"{k} {v}" for k, v in counts.items())


Watchdog = Callable[[list[Child]], None]


KAFKA_CHILDREN = ("worker", "ingester")


def start_again(children: list[Child], names: tuple[str, ...]) -> None:
    """Have the supervisor start the named children that are not running at its next turn
    (a worker stopped on purpose exits 0 and would otherwise count as finished)."""
    for child in children:
        stopped = child.process is None or child.process.poll() is not None
        if child.name.startswith(names) and stopped:
            child.process, child.done, child.next_start = None, False, 0.0


def broker_watchdog(broker: EmbeddedKafka, settings: Settings, database_url: str) -> Watchdog:
    """Restart a dead embedded broker on its port, recover what it lost (ingest.recovery)
    and start the children that talk to it again. A recovery that fails is tried again at
    the next turn until it succeeds; the children are started again either way."""
    pending = {"since": 0.0}  # > 0: the broker was lost and recovery has not finished

    def watch(children: list[Child]) -> None:
        if not broker.alive():
            log.error("the embedded broker died; restarting it on %s", broker.bootstrap_servers)
            pending["since"] = pending["since"] or time.monotonic()
            _stop_all([c for c in children if c.name.startswith(KAFKA_CHILDREN)])
            broker.restart()
        if not pending["since"]:
            return
        try:
            recovered = asyncio.run(recover_after_broker_loss(settings, database_url))
        finally:
            start_again(children, KAFKA_CHILDREN)
        log.warning(
            "broker back in %.1fs: %d papers republished, %d labels to re-send",
            time.monotonic() - pending["since"], recovered.papers_republished,
            recovered.labels_to_resend,
        )  # fmt: skip
        pending["since"] = 0.0

    return watch


STALL_CHECK_EVERY_S = 15.0


def stall_watchdog(
    settings: Settings,
    position: Callable[[], GroupPosition | None],
    clock: Callable[[], float] = time.monotonic,
) -> Watchdog:
    """Restart the workers when their group stalls (broker.lag.StallDetector): records wait
    and the committed offsets have not moved for ``worker_stall_s``. The safety net for a
    worker that lives but no longer consumes (seen once after a worker was SIGKILLed: the
    restarted one stopped after four batches), whatever the cause."""
    detector = StallDetector(settings.worker_stall_s)
    checked = {"at": -STALL_CHECK_EVERY_S}

    def watch(children: list[Child]) -> None:
        now = clock()
        workers = [c for c in children if c.name.startswith("worker")]
        if any(c.process is None for c in workers):  # one is being (re)started
            detector.restart(now)
            return
        if settings.worker_stall_s <= 0 or now - checked["at"] < STALL_CHECK_EVERY_S:
            return
        checked["at"] = now
        if not detector.observe(position(), now):
            return
        log.error(
            "the workers made no progress for %.0fs with papers waiting on %s; restarting them",
            settings.worker_stall_s, settings.topic_papers,
        )  # fmt: skip
        _stop_all(workers)
        start_again(children, ("worker",))
        detector.restart(now)

    return watch


def broker_group_position(settings: Settings) -> Callable[[], GroupPosition | None]:
    """The workers' group position on the papers topic, None when the broker cannot say."""

    def read() -> GroupPosition | None:
        try:
            return asyncio.run(
                group_position(settings, settings.consumer_group, settings.topic_papers)
            )
        except Exception as exc:  # broker away: the broker watchdog's business, not a stall
            log.debug("group position unavailable: %s", exc)
            return None

    return read


def both(*watchdogs: Watchdog | None) -> Watchdog:
    def watch(children: list[Child]) -> None:
        for watchdog in watchdogs:
            if watchdog is not None:
                watchdog(children)

    return watch


def supervise(
    children: list[Child],
    env: dict[str, str],
    database_url: str,
    watchdog: Watchdog | None = None,
) -> None:
    """Keep the children running until Ctrl-C / SIGTERM; restart crashed ones with backoff;
    ``watchdog`` looks after what is not a child (the embedded broker) every turn."""
    stop = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)  # terminal closed: stop cleanly, embedded PG too
    for child in children:
        _start(child, env)
    last_progress = 0.0
    try:
        while not stop:
            now = time.monotonic()
            for child in children:
                if child.done or child.process is None:
                    continue
                code = child.process.poll()
                if code is None:
                    continue
                if code == 0:
                    log.info("%s finished", child.name)
                    child.done = True
                    continue
                # A child that ran a while before dying gets a fresh backoff.
                if now - child.started_at > 5 * MAX_BACKOFF_S:
                    child.restarts = 0
                delay = min(MAX_BACKOFF_S, 2.0**child.restarts)
                child.restarts += 1
                log.error("%s exited with %d; restarting in %.0fs", child.name, code, delay)
                child.process = None
                child.next_start = now + delay
            if watchdog is not None:
                try:
                    watchdog(children)
                except Exception as exc:  # the next turn tries again
                    log.error("a watchdog failed (%s); retrying", exc)
                    time.sleep(2.0)
            for child in children:
                if child.process is None and not child.done and now >= child.next_start:
                    _start(child, env)
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                try:
                    log.info("progress: %s", _progress(database_url))
                except Exception as exc:  # progress is informative only
                    log.warning("progress unavailable: %s", exc)
            time.sleep(0.5)
    finally:
        log.info("stopping %d processes", len(children))
        _stop_all(children)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from cli.cmd_models import print_trained
    from lifecycle.train import train_and_register

    if args.replay is not None:
        replay_source(args.replay)  # refuse a bad file before anything starts
    with services(settings, need_kafka=True, start_kafka=True) as found:
        live = settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap})
        migrate.upgrade(found.database_url)
        asyncio.run(ensure_topics(live))
        state_file = write_running_state(settings, found)
        try:
            registry = Registry(live, found.database_url)
            if registry.promoted_version() is None:
                if args.snapshot is None:
                    raise ModelNotFoundError(NO_MODEL_HELP)
                log.info("no promoted model: training one from %s", args.snapshot)
                print_trained(train_and_register(live, registry, args.snapshot, now=utc_now()))
            env = dict(os.environ)
            env.update(
                ARXIV_STREAM_DATABASE_URL=found.database_url,
                ARXIV_STREAM_KAFKA_BOOTSTRAP_SERVERS=found.kafka_bootstrap or "",
                ARXIV_STREAM_DATA_DIR=str(settings.data_dir),
            )
            children = child_commands(args, settings)
            if not args.no_api:
                print(f"arxiv-stream page and API: {page_url(settings)}", flush=True)
            watch = both(
                broker_watchdog(found.broker, live, found.database_url) if found.broker else None,
                stall_watchdog(live, broker_group_position(live)),
            )
            supervise(children, env, found.database_url, watch)
        finally:
            state_file.unlink(missing_ok=True)
    log.info("stopped")
    return 0
