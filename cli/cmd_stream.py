"""``arxiv-stream worker``, ``serve`` (the HTTP API and page) and ``tail`` (the subscriber
is broker/tail.py)."""

from __future__ import annotations

import argparse
import asyncio

from broker.tail import tail_topic
from cli.services import running_kafka, services
from core.errors import ConfigError, ModelNotFoundError
from core.settings import Settings
from db import migrate, repository
from db.engine import run_sync
from models.registry import NO_MODEL_HELP


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="run one classification worker (Faust agent)")
    worker.set_defaults(handler=_worker)

    serve = sub.add_parser("serve", help="the HTTP API, the web page and /metrics")
    serve.add_argument("--host", default=None, help="default: API_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: API_PORT (8000)")
    serve.set_defaults(handler=_serve)

    tail = sub.add_parser("tail", help="print messages from classified-papers")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    tail.add_argument("--limit", type=int, default=None, help="stop after N messages")
    tail.add_argument("--json", action="store_true", help="print each message as JSON")
    tail.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="exit after S seconds without a message (default: run until Ctrl-C)",
    )
    tail.add_argument("--topic", default=None, help="another topic (e.g. the dead-letter topic)")
    tail.set_defaults(handler=_tail)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream.worker import run_worker  # torch and Faust load only for this command

    with services(settings, need_kafka=False) as found:
        at = migrate.current(found.database_url)
        if at != migrate.head():
            raise ConfigError(
                f"the database schema is at {at or 'nothing'}, not {migrate.head()}: "
                "run `arxiv-stream db upgrade` (or `arxiv-stream up`)"
            )
        # the model next: without one, a broker would not help (and says less)
        if run_sync(found.database_url, repository.promoted_version) is None:
            raise ModelNotFoundError(NO_MODEL_HELP)
    with services(settings, need_kafka=True) as found:
        run_worker(
            settings.model_copy(update={"kafka_bootstrap_servers": found.kafka_bootstrap}),
            found.database_url,
        )
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from api.server import run_api  # FastAPI and torch load only for this command

    chosen = {"api_host": args.host, "api_port": args.port}
    live = settings.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    with services(live, need_kafka=False) as found:
        migrate.upgrade(found.database_url)
        run_api(live, found.database_url)
    return 0


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    live = settings.model_copy(update={"kafka_bootstrap_servers": running_kafka(settings)})
    asyncio.run(
        tail_topic(
            live,
            args.topic or settings.topic_classified,
            from_beginning=args.from_beginning,
            limit=args.limit,
            as_json=args.json,
            idle_exit_s=args.idle_exit,
        )
    )
    return 0
